"""jaxrec.evaluate against brute force on a small random score table.

Legend: U = users evaluated, N = candidates, K = cutoff.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import evaluate
from jaxrec import metrics

N_USERS, N_ITEMS, U = 30, 40, 23  # U is not a multiple of any chunk size.
KS = (1, 5, 10)
HIGH = 10.0  # above every random score: counting it anywhere shifts a rank


def make_score_fn(table, trace_log=None):
  """score_fn over a (N_USERS + 1, N_ITEMS + 1) table; logs each trace."""
  table = jnp.asarray(table)

  def score_fn(users, candidates):
    if trace_log is not None:
      trace_log.append(candidates.shape)
    rows = table[users]
    if candidates.ndim == 1:
      return rows[:, candidates]
    return jnp.take_along_axis(rows, candidates, axis=1)

  return score_fn


@pytest.fixture(name="problem")
def problem_fixture():
  rng = np.random.default_rng(0)
  table = rng.integers(0, 4, size=(N_USERS + 1, N_ITEMS + 1))
  table = table.astype(np.float32)
  table[:, 0] = HIGH  # padding would beat every target if it counted
  users = rng.choice(np.arange(1, N_USERS + 1), size=U, replace=False)
  targets = rng.integers(1, N_ITEMS + 1, size=U)
  lists = []
  for i, u in enumerate(users):
    size = 0 if i == 3 else int(rng.integers(1, 9))
    excl = rng.choice(np.arange(1, N_ITEMS + 1), size=size, replace=False)
    excl = excl[excl != targets[i]]
    if i == 5:
      excl = np.append(excl, targets[i])  # target listed: still ranked
    table[u, excl] = HIGH  # excluded items would beat the target
    lists.append(excl)
  indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
  items = np.concatenate(lists).astype(np.int32)
  return table, users, targets, indptr, items, lists


def brute_full_ranks(table, users, targets, lists):
  ranks = []
  for u, t, excl in zip(users, targets, lists):
    s = table[u]
    ranks.append(sum(1 for j in range(1, N_ITEMS + 1)
                     if j != t and j not in set(excl) and s[j] >= s[t]))
  return np.array(ranks)


def check_against_ranks(got, ranks):
  np.testing.assert_array_equal(got["rank"], ranks)
  for k in KS:
    np.testing.assert_allclose(got[f"HR@{k}"], ranks < k)
    ndcg = [1 / math.log2(r + 2) if r < k else 0.0 for r in ranks]
    np.testing.assert_allclose(got[f"NDCG@{k}"], ndcg, rtol=1e-6)
    mrr = [1 / (r + 1) if r < k else 0.0 for r in ranks]
    np.testing.assert_allclose(got[f"MRR@{k}"], mrr, rtol=1e-6)
  np.testing.assert_allclose(got["MRR"], 1 / (ranks + 1), rtol=1e-6)


def test_full_ranking_matches_brute_force_and_compiles_once(problem):
  table, users, targets, indptr, items, lists = problem
  traces = []
  score_fn = make_score_fn(table, traces)
  got = evaluate.full_ranking(score_fn, users, targets, indptr, items,
                              N_ITEMS, chunk_size=8, ks=KS)
  check_against_ranks(got, brute_full_ranks(table, users, targets, lists))
  # Three chunks (the last one padded), a single trace.
  assert traces == [(N_ITEMS + 1,)]
  evaluate.full_ranking(score_fn, users, targets, indptr, items, N_ITEMS,
                        chunk_size=8, ks=KS)
  assert len(traces) == 1


def test_full_ranking_ignores_chunk_size(problem):
  table, users, targets, indptr, items, _ = problem
  score_fn = make_score_fn(table)
  results = [evaluate.full_ranking(score_fn, users, targets, indptr, items,
                                   N_ITEMS, chunk_size=c, ks=KS)
             for c in (1, 7, 256)]
  for other in results[1:]:
    for name, value in results[0].items():
      np.testing.assert_array_equal(other[name], value, err_msg=name)


def test_full_ranking_partial_params_reuse_compilation(problem):
  table, users, targets, indptr, items, lists = problem
  traces = []

  def score(tab, u, c):
    traces.append(1)
    return tab[u][:, c]

  for shift in (0.0, 1.0):
    tab = table.copy()
    tab[:, 1::2] += shift  # odd items move up: ranks change
    fn = jax.tree_util.Partial(score, jnp.asarray(tab))
    got = evaluate.full_ranking(fn, users, targets, indptr, items, N_ITEMS,
                                chunk_size=8, ks=KS)
    check_against_ranks(got, brute_full_ranks(tab, users, targets, lists))
  assert len(traces) == 1


def test_full_ranking_all_exclusion_lists_empty(problem):
  table, users, targets, _, _, _ = problem
  table = table.copy()
  table[users, 1:] = np.where(table[users, 1:] == HIGH, 0.0,
                              table[users, 1:])
  indptr = np.zeros(U + 1, np.int64)
  got = evaluate.full_ranking(make_score_fn(table), users, targets, indptr,
                              np.zeros(0, np.int32), N_ITEMS, ks=KS)
  want = brute_full_ranks(table, users, targets, [[]] * U)
  check_against_ranks(got, want)


def test_full_ranking_rejects_padding_target(problem):
  table, users, targets, indptr, items, _ = problem
  targets = targets.copy()
  targets[0] = 0
  with pytest.raises(ValueError, match="targets"):
    evaluate.full_ranking(make_score_fn(table), users, targets, indptr,
                          items, N_ITEMS)


def test_summarize_means_all_but_rank():
  per_user = {"rank": np.array([0, 4]), "HR@1": np.array([1.0, 0.0])}
  assert evaluate.summarize(per_user) == {"HR@1": 0.5}


def test_sampled_ranking_matches_brute_force(problem):
  table, users, _, _, _, _ = problem
  rng = np.random.default_rng(1)
  cands = rng.integers(1, N_ITEMS + 1, size=(U, 12)).astype(np.int32)
  cands[2, 5:] = 0  # short negative list padded with 0
  cands[4, 3] = cands[4, 0]  # a negative equal to the target
  table = table.copy()
  table[users[4], cands[4, 0]] = 3.0
  traces = []
  got = evaluate.sampled_ranking(make_score_fn(table, traces), users, cands,
                                 chunk_size=5, ks=KS)
  ranks = []
  for u, row in zip(users, cands):
    s = table[u]
    ranks.append(sum(1 for c in row[1:]
                     if c not in (0, row[0]) and s[c] >= s[row[0]]))
  check_against_ranks(got, np.array(ranks))
  assert len(traces) == 1


def test_sampled_ranking_ties_pessimistic():
  table = np.zeros((2, 6), np.float32)
  table[1] = [0.0, 2.0, 2.0, 2.0, 1.0, 3.0]
  cands = np.array([[1, 2, 3, 4], [1, 2, 3, 5]])
  got = evaluate.sampled_ranking(make_score_fn(table), np.array([1, 1]),
                                 cands, ks=(1,))
  np.testing.assert_array_equal(got["rank"], [2, 3])


def _dense(indptr, items, n_rows):
  mask = np.zeros((n_rows, N_ITEMS + 1), bool)
  for i in range(n_rows):
    mask[i, items[indptr[i]:indptr[i + 1]]] = True
  return mask


def test_full_ranking_multi_matches_dense_reference(problem):
  table, users, _, ex_ptr, ex_items, _ = problem
  rng = np.random.default_rng(2)
  rel_lists = [rng.choice(np.arange(1, N_ITEMS + 1),
                          size=int(rng.integers(1, 6)), replace=False)
               for _ in range(U)]
  rel_ptr = np.concatenate([[0], np.cumsum([len(x) for x in rel_lists])])
  rel_items = np.concatenate(rel_lists)
  traces = []
  ks = (1, 5, 50)
  got = evaluate.full_ranking_multi(
      make_score_fn(table, traces), users, rel_ptr, rel_items, ex_ptr,
      ex_items, N_ITEMS, chunk_size=8, ks=ks)
  assert len(traces) == 1
  relevant = _dense(rel_ptr, rel_items, U)
  exclude = _dense(ex_ptr, ex_items, U)
  exclude[:, 0] = True
  want = jax.jit(metrics.multi_relevant_metrics, static_argnames="ks")(
      table[users], relevant, exclude, ks)
  assert set(got) == set(want)
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)
  # Padding (scored HIGH) never takes the top slot: Precision@1 is 1 exactly
  # when every item tied for the best remaining score is relevant.
  valid = ~exclude | relevant
  for i, u in enumerate(users):
    best = table[u] == table[u][valid[i]].max()
    assert got["Precision@1"][i] == np.all(relevant[i][valid[i] & best])


def test_full_ranking_multi_rejects_empty_relevant(problem):
  table, users, _, ex_ptr, ex_items, _ = problem
  rel_ptr = np.zeros(U + 1, np.int64)
  with pytest.raises(ValueError, match="relevant"):
    evaluate.full_ranking_multi(make_score_fn(table), users, rel_ptr,
                                np.zeros(0, np.int32), ex_ptr, ex_items,
                                N_ITEMS)
