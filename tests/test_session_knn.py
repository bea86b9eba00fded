"""Session baselines: item-kNN against a loop over events, popularity."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.sessions import Sessions
from jaxrec.models import session_knn
from jaxrec.train import session_eval


def _sessions(seqs, n_items):
  items = np.concatenate([np.asarray(s, np.int32) for s in seqs])
  offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
  return Sessions(items, offsets, n_items)


def _loop_knn(seqs, n_items, n_sims, lmbd, alpha):
  """The official baselines.py CoOccurence, as a loop over each item's
  events (every event of i adds all events of its session)."""
  supp = np.zeros(n_items + 1)
  for s in seqs:
    for i in s:
      supp[i] += 1
  sims = np.zeros((n_items + 1, n_items + 1))
  for i in range(1, n_items + 1):
    row = np.zeros(n_items + 1)
    for s in seqs:
      for e in s:
        if e == i:
          for j in s:
            row[j] += 1
    row[i] = 0
    norm = (supp[i] + lmbd) ** alpha * (supp + lmbd) ** (1 - alpha)
    norm[norm == 0] = 1
    row = row / norm
    row[0] = 0
    keep = np.argsort(-row, kind="stable")[:n_sims]
    out = np.zeros_like(row)
    out[keep] = row[keep]
    sims[i] = out
  return sims


def test_item_knn_matches_the_official_loop():
  rng = np.random.default_rng(0)
  n = 15
  seqs = [rng.integers(1, n + 1, size=rng.integers(2, 7)) for _ in range(40)]
  for n_sims, lmbd, alpha in ((100, 20.0, 0.5), (4, 0.0, 0.3)):
    got = session_knn.item_knn(_sessions(seqs, n), n_sims, lmbd, alpha)
    ref = _loop_knn(seqs, n, n_sims, lmbd, alpha)
    if n_sims >= n:
      np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    else:
      # Truncation may keep extra entries tied at the cut; the top n_sims
      # values of each row agree.
      np.testing.assert_allclose(-np.sort(-got, axis=1)[:, :n_sims],
                                 -np.sort(-ref, axis=1)[:, :n_sims],
                                 rtol=1e-5, atol=1e-7)
      assert ((got > 0).sum(axis=1) >= (ref > 0).sum(axis=1)).all()


def test_item_knn_recovers_a_planted_successor_and_never_repeats():
  seqs = [[1, 2], [1, 2], [1, 2], [1, 3], [4, 5, 6]]
  sims = session_knn.item_knn(_sessions(seqs, 6), lmbd=0.0)
  assert np.argmax(sims[1]) == 2
  assert (np.diag(sims) == 0).all() and (sims[:, 0] == 0).all()
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.table_step, jnp.asarray(sims)), (),
      _sessions([[1, 2], [4, 5]], 6), 2)
  assert ranks[0] == 0


def test_popularity_ranks_by_training_count():
  counts = jnp.asarray([0, 1, 5, 3, 0], jnp.float32)
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.popularity_step, counts), (),
      _sessions([[1, 2, 3, 1], [4, 2]], 4), 2)
  # Targets 2, 3, 1 | 2: ranks 0, 1, 2 | 0 whatever the input.
  np.testing.assert_array_equal(ranks, [0, 1, 2, 0])
