"""jaxrec.metrics against brute-force loops, on tied scores and random masks.

Legend: B = batch of users, N = candidates, K = cutoff.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import metrics

KS = (1, 3, 5, 20)  # 20 > N exercises a cutoff beyond the candidate count.
# One compile instead of op-by-op dispatch keeps the tests fast.
multi_metrics = jax.jit(metrics.multi_relevant_metrics, static_argnames="ks")


def brute_rank(s, t, excl):
  """Pessimistic rank of column t; NaN on either side counts against t."""
  rank = 0
  for j in range(len(s)):
    if j == t or excl[j]:
      continue
    if math.isnan(s[j]) or math.isnan(s[t]) or s[j] >= s[t]:
      rank += 1
  return rank


def brute_positions(s, rel, excl):
  """Sorted 0-based positions of relevant items (NaN-free scores).

  Within a group of equal scores the non-relevant items come first, then the
  relevant ones; relevant items are never excluded.
  """
  valid = ~excl | rel
  pos = []
  for v in np.unique(s[rel]):
    above = np.sum(valid & (s > v))
    tied_other = np.sum(valid & ~rel & (s == v))
    pos += [above + tied_other + i for i in range(np.sum(rel & (s == v)))]
  return sorted(pos)


def brute_multi(s, rel, excl, k):
  """(recall, precision, ndcg, ap) at k for one user."""
  hits = [p for p in brute_positions(s, rel, excl) if p < k]
  n_rel = int(rel.sum())
  precision = len(hits) / k
  if n_rel == 0:
    return math.nan, precision, math.nan, math.nan
  dcg = sum(1 / math.log2(p + 2) for p in hits)
  idcg = sum(1 / math.log2(i + 2) for i in range(min(k, n_rel)))
  ap = sum((i + 1) / (p + 1) for i, p in enumerate(hits)) / min(k, n_rel)
  return len(hits) / n_rel, precision, dcg / idcg, ap


def _random_problem(seed, b=32, n=15):
  rng = np.random.default_rng(seed)
  # Few distinct values so that ties are everywhere.
  scores = rng.integers(0, 4, size=(b, n)).astype(np.float32)
  exclude = rng.random((b, n)) < 0.25
  target = rng.integers(0, n, size=b).astype(np.int32)
  relevant = rng.random((b, n)) < 0.25
  relevant[0] = False  # a user without relevant items
  relevant[1] = True  # every candidate relevant
  return scores, exclude, target, relevant


@pytest.mark.parametrize("seed", [0, 1])
def test_target_rank_matches_brute_force(seed):
  scores, exclude, target, _ = _random_problem(seed)
  got = np.asarray(metrics.target_rank(scores, target, exclude))
  want = [brute_rank(s, t, e) for s, t, e in zip(scores, target, exclude)]
  np.testing.assert_array_equal(got, want)
  assert got.dtype == np.int32
  no_excl = np.asarray(metrics.target_rank(scores, target))
  want = [brute_rank(s, t, np.zeros_like(e))
          for s, t, e in zip(scores, target, exclude)]
  np.testing.assert_array_equal(no_excl, want)


def test_target_rank_ties_are_pessimistic():
  scores = jnp.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
  assert int(metrics.target_rank(scores, jnp.array([1]))[0]) == 2
  # A higher score ahead of the tie adds one more.
  scores = jnp.array([[1.0, 2.0, 2.0, 2.0, 5.0]])
  assert int(metrics.target_rank(scores, jnp.array([1]))[0]) == 3


def test_target_rank_exclusion_and_self():
  scores = jnp.array([[3.0, 2.0, 5.0, 4.0]])
  exclude = jnp.array([[False, True, True, False]])
  # The target (column 1) is marked excluded: it is still ranked, and the
  # excluded column 2 does not count.
  assert int(metrics.target_rank(scores, jnp.array([1]), exclude)[0]) == 2


def test_target_rank_nan_is_worst():
  scores = jnp.array([[jnp.nan, 1.0, 2.0, 3.0],
                      [1.0, jnp.nan, 0.0, 0.0],
                      [1.0, jnp.nan, 0.0, 0.0]])
  exclude = jnp.array([[False, False, False, True],
                       [False, False, False, False],
                       [False, True, False, False]])
  got = metrics.target_rank(scores, jnp.array([0, 0, 0]), exclude)
  # NaN target: below every non-excluded competitor. NaN competitor: above
  # the target unless excluded.
  np.testing.assert_array_equal(got, [2, 1, 0])


def test_rank_metrics_hand_values():
  rank = jnp.array([0, 1, 9, 10], jnp.int32)
  np.testing.assert_allclose(metrics.hit_rate(rank, 10), [1, 1, 1, 0])
  np.testing.assert_allclose(
      metrics.ndcg(rank, 10), [1, 1 / math.log2(3), 1 / math.log2(11), 0],
      rtol=1e-6)
  np.testing.assert_allclose(metrics.mrr(rank), [1, 0.5, 0.1, 1 / 11],
                             rtol=1e-6)
  np.testing.assert_allclose(metrics.mrr(rank, 10), [1, 0.5, 0.1, 0],
                             rtol=1e-6)


@pytest.mark.parametrize("k", [1, 5])
def test_rank_metrics_match_brute_force(k):
  rank = np.random.default_rng(k).integers(0, 12, size=40)
  hr = [1.0 if r < k else 0.0 for r in rank]
  nd = [1 / math.log2(r + 2) if r < k else 0.0 for r in rank]
  rr = [1 / (r + 1) if r < k else 0.0 for r in rank]
  np.testing.assert_allclose(metrics.hit_rate(rank, k), hr)
  np.testing.assert_allclose(metrics.ndcg(rank, k), nd, rtol=1e-6)
  np.testing.assert_allclose(metrics.mrr(rank, k), rr, rtol=1e-6)
  np.testing.assert_allclose(metrics.mrr(rank), 1 / (rank + 1), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_relevant_matches_brute_force(seed):
  scores, exclude, _, relevant = _random_problem(seed)
  got = multi_metrics(scores, relevant, exclude, KS)
  for k in KS:
    want = np.array([brute_multi(s, r, e, k)
                     for s, r, e in zip(scores, relevant, exclude)])
    for col, name in enumerate(("Recall", "Precision", "NDCG", "MAP")):
      np.testing.assert_allclose(got[f"{name}@{k}"], want[:, col],
                                 rtol=1e-5, atol=1e-7, err_msg=f"{name}@{k}")
  assert np.isnan(got["Recall@5"][0]) and got["Precision@5"][0] == 0


def test_single_metric_wrappers_agree_with_dict():
  scores, exclude, _, relevant = _random_problem(3)
  both = multi_metrics(scores, relevant, exclude, (5,))
  fns = {"Recall": metrics.recall_at_k, "Precision": metrics.precision_at_k,
         "NDCG": metrics.ndcg_at_k_multi,
         "MAP": metrics.average_precision_at_k}

  @functools.partial(jax.jit, static_argnums=3)
  def each(s, r, e, k):
    return {name: fn(s, r, e, k) for name, fn in fns.items()}

  for name, value in each(scores, relevant, exclude, 5).items():
    np.testing.assert_array_equal(value, both[f"{name}@5"])


def test_multi_relevant_ties_hand_example():
  scores = jnp.array([[3.0, 3.0, 3.0, 1.0]])
  relevant = jnp.array([[True, False, True, False]])
  # The tied non-relevant item goes first: relevant items sit at ranks 1, 2.
  got = multi_metrics(scores, relevant, None, (1, 2, 3))
  np.testing.assert_allclose(got["Precision@1"], [0.0])
  np.testing.assert_allclose(got["Recall@2"], [0.5])
  np.testing.assert_allclose(got["Recall@3"], [1.0])
  np.testing.assert_allclose(got["MAP@3"], [(1 / 2 + 2 / 3) / 2], rtol=1e-6)
  ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
  np.testing.assert_allclose(got["NDCG@3"], [ndcg], rtol=1e-6)


def test_multi_relevant_nan_and_precedence():
  # NaN non-relevant item goes first, NaN relevant item goes last.
  scores = jnp.array([[jnp.nan, 5.0, jnp.nan, 1.0]])
  relevant = jnp.array([[False, False, True, True]])
  got = multi_metrics(scores, relevant, None, (3,))
  np.testing.assert_allclose(got["Recall@3"], [0.5])
  np.testing.assert_allclose(got["MAP@3"], [(1 / 3) / 2], rtol=1e-6)
  # A relevant item marked excluded stays; other excluded items leave.
  scores = jnp.array([[1.0, 2.0, 3.0]])
  relevant = jnp.array([[True, False, False]])
  exclude = jnp.array([[True, True, False]])
  got = multi_metrics(scores, relevant, exclude, (1, 2, 3))
  np.testing.assert_allclose(got["Recall@1"], [0.0])
  np.testing.assert_allclose(got["Recall@2"], [1.0])
  # Precision divides by K even though only two candidates remain.
  np.testing.assert_allclose(got["Precision@3"], [1 / 3], rtol=1e-6)


def test_functions_jit():
  scores, exclude, target, _ = _random_problem(4)
  np.testing.assert_array_equal(
      jax.jit(metrics.target_rank)(scores, target, exclude),
      metrics.target_rank(scores, target, exclude))
  np.testing.assert_allclose(jax.jit(metrics.ndcg, static_argnums=1)(
      target, 3), metrics.ndcg(target, 3))
