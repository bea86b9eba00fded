"""FAISS indexes: exactness against brute force, exclusion, ANN recall."""

import numpy as np
import pytest

from jaxrec import retrieval


def _data(n_items=600, n_queries=40, dim=16, seed=0):
  rng = np.random.default_rng(seed)
  items = rng.normal(size=(n_items + 1, dim)).astype(np.float32)
  items[0] = 100.0  # padding row: would win every query if it were indexed
  queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
  return items, queries, rng


def _brute_force(items, queries, k, exclude):
  """Top-k item ids 1..n by a Python loop, skipping excluded ids."""
  out = []
  for q, seen in zip(queries, exclude):
    scores = items[1:] @ q
    order = [int(i) + 1 for i in np.argsort(-scores, kind="stable")]
    out.append([i for i in order if i not in set(seen.tolist())][:k])
  return np.asarray(out)


def test_flat_search_with_exclusion_equals_brute_force():
  items, queries, rng = _data()
  exclude = np.zeros((len(queries), 30), np.int32)
  for r in range(len(queries)):  # ragged lists: some rows 0-padded
    n = rng.integers(0, 31)
    exclude[r, :n] = rng.choice(np.arange(1, 601), n, replace=False)
  # Make the best item of every query a seen one, so exclusion matters.
  exclude[:, 0] = _brute_force(items, queries, 1, exclude[:, :0])[:, 0]
  index = retrieval.ItemIndex(items, retrieval.IndexConfig("flat"))
  scores, found = index.search(queries, 10, exclude)
  want = _brute_force(items, queries, 10, exclude)
  np.testing.assert_array_equal(found, want)
  np.testing.assert_allclose(
      scores, np.take_along_axis(queries @ items.T, want, 1), rtol=1e-5)
  assert not retrieval._contains(exclude, found).any()


def test_too_few_items_pads_with_id_zero():
  items, queries, _ = _data(n_items=5, n_queries=2)
  exclude = np.array([[1, 2, 3], [0, 0, 0]], np.int32)
  scores, found = retrieval.ItemIndex(items).search(queries, 4, exclude)
  assert sorted(found[0, :2]) == [4, 5] and (found[0, 2:] == 0).all()
  assert np.isneginf(scores[0, 2:]).all() and (found[1] > 0).all()


def test_ivf_is_exact_when_probing_every_cell_and_worse_with_one():
  items, queries, _ = _data(n_items=2000, dim=8)
  exact = retrieval.ItemIndex(items).search(queries, 10)[1]
  ivf = retrieval.ItemIndex(items, retrieval.IndexConfig(
      "ivf", nlist=32, nprobe=32))
  assert retrieval.recall_at_k(ivf.search(queries, 10)[1], exact) == 1.0
  retrieval.set_search_params(ivf.index, nprobe=1)
  assert retrieval.recall_at_k(ivf.search(queries, 10)[1], exact) < 0.9


def test_hnsw_recall_against_exact():
  items, queries, _ = _data(n_items=3000, dim=8)
  exact = retrieval.ItemIndex(items).search(queries, 10)[1]
  hnsw = retrieval.ItemIndex(items, retrieval.IndexConfig(
      "hnsw", hnsw_m=16, ef_search=128))
  found = hnsw.search(queries, 10)[1]
  assert (found > 0).all()
  assert retrieval.recall_at_k(found, exact) >= 0.95


def test_recall_at_k_counts_overlap():
  exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
  found = np.array([[4, 3, 9, 0], [5, 6, 7, 8]])
  assert retrieval.recall_at_k(found, exact) == pytest.approx(0.75)


def test_exclusion_lists_from_csr():
  indptr = np.array([0, 2, 2, 5])
  items = np.array([3, 4, 7, 8, 9], np.int32)
  out = retrieval.exclusion_lists(indptr, items, np.array([2, 0, 1]))
  np.testing.assert_array_equal(out, [[7, 8, 9], [3, 4, 0], [0, 0, 0]])


def test_bad_kind_and_shape():
  with pytest.raises(ValueError, match="unknown index kind"):
    retrieval.build(np.ones((3, 2), np.float32),
                    retrieval.IndexConfig("lsh"))
  with pytest.raises(ValueError, match=r"\(N, D\)"):
    retrieval.build(np.ones(3, np.float32))


@pytest.mark.skipif(not retrieval.gpu_available(),
                    reason="FAISS sees no GPU here; the GPU path is untested")
def test_gpu_flat_equals_cpu_flat():
  items, queries, _ = _data()
  cpu = retrieval.ItemIndex(items, retrieval.IndexConfig(use_gpu=False))
  gpu = retrieval.ItemIndex(items, retrieval.IndexConfig(use_gpu=True))
  np.testing.assert_array_equal(cpu.search(queries, 10)[1],
                                gpu.search(queries, 10)[1])
