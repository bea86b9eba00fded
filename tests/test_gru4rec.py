"""GRU4Rec: hidden-state resets, sampled losses, evaluation, a tiny run."""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxrec import session_losses as L
from jaxrec.data import sessions as S
from jaxrec.models import gru4rec
from jaxrec.train import session, session_eval


def _sessions(seqs, n_items):
  items = np.concatenate([np.asarray(s, np.int32) for s in seqs])
  offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
  return S.Sessions(items, offsets, n_items)


def _train_config(loss="ce", logq=0.0, bpreg=0.0):
  return ml_collections.ConfigDict(dict(loss=loss, logq=logq, bpreg=bpreg))


@pytest.mark.parametrize("kind", ["constrained", "embedding", "one-hot"])
def test_hidden_state_resets_exactly_at_session_boundaries(kind):
  # Sessions of lengths 5, 2, 3, 4, 2 on 2 rows end at different steps.
  seqs = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 1], [2, 4, 6, 8], [3, 5]]
  sessions = _sessions(seqs, 9)
  model = gru4rec.GRU4Rec(
      n_items=9, layers=(6, 5), constrained=kind == "constrained",
      embedding=4 if kind == "embedding" else 0)
  sched = S.session_parallel(sessions, 2)
  state = session.create_state(model, optax.sgd(0.0), 2, jax.random.key(0))
  step = jax.jit(functools.partial(
      session.train_step, log_counts=jnp.zeros(10),
      train_config=_train_config(), elu=0.0, sample_alpha=1.0))
  got = {}
  for t in range(sched["inputs"].shape[0]):
    batch = {k: jnp.asarray(sched[k][t])
             for k in ("inputs", "targets", "reset", "valid")}
    batch["negatives"] = jnp.array([1, 2], jnp.int32)
    state, _ = step(state, batch, jax.random.key(1))
    for b in range(2):
      if sched["valid"][t, b]:
        got[(sched["session"][t, b], t)] = [np.asarray(h[b])
                                            for h in state.hidden]
  # Reference: each session on its own, from a zero state.
  ref_step = jax.jit(functools.partial(model.apply, method="step"))
  for s, seq in enumerate(seqs):
    h = gru4rec.zero_hidden(model.layers, 1)
    steps = sorted(t for (ss, t) in got if ss == s)
    assert len(steps) == len(seq) - 1
    for t, item in zip(steps, seq[:-1]):
      h, _ = ref_step({"params": state.params}, h, jnp.array([item]))
      for layer, ref in zip(got[(s, t)], h):
        np.testing.assert_allclose(layer, np.asarray(ref[0]), rtol=1e-5,
                                   atol=1e-6)


def test_sampled_softmax_equals_full_softmax_when_every_item_is_sampled():
  rng = np.random.default_rng(0)
  n, b = 12, 4
  full = jnp.asarray(rng.normal(size=(b, n + 1)), jnp.float32)  # col = item
  targets = np.array([3, 7, 1, 11])
  others = np.setdiff1d(np.arange(1, n + 1), targets)
  cols = np.r_[targets, others]  # every item exactly once
  sampled = L.sampled_softmax_xe(full[:, cols], jnp.ones(n, bool))
  ref = optax.softmax_cross_entropy_with_integer_labels(full[:, 1:],
                                                        targets - 1)
  np.testing.assert_allclose(sampled, ref, rtol=1e-5)


def test_absent_columns_are_not_negatives():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
  columns = jnp.array([True, False, True, True, True, True])
  kept = np.array([0, 2, 3, 4, 5])
  got = L.sampled_softmax_xe(logits, columns)
  for b in (0, 2):
    row = np.asarray(logits[b, kept])
    ref = -(logits[b, b] - np.log(np.exp(row).sum()))
    np.testing.assert_allclose(got[b], ref, rtol=1e-5)
  assert np.isfinite(np.asarray(got[1]))  # the absent row stays finite


def test_logq_shifts_logits_by_log_sampling_probability():
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
  log_q = jnp.asarray(np.log(rng.uniform(0.01, 1, size=7)), jnp.float32)
  cols = jnp.ones(7, bool)
  got = L.sampled_softmax_xe(logits, cols, log_q, logq_weight=0.7)
  z = np.asarray(logits) - 0.7 * np.asarray(log_q)[None, :]
  ref = -(np.diag(z[:, :3]) - np.log(np.exp(z).sum(axis=1)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # A column sampled more often is pushed down: its softmax share falls.
  grad = jax.grad(lambda w: L.sampled_softmax_xe(logits, cols, log_q, w
                                                 ).sum())(0.0)
  assert np.isfinite(grad)


def test_train_step_log_q_is_count_for_targets_and_count_alpha_for_samples():
  counts = np.array([0, 5, 1, 9, 2])
  log_counts = jnp.log(jnp.maximum(jnp.asarray(counts, jnp.float32), 1))
  model = gru4rec.GRU4Rec(n_items=4, layers=(3,))
  state = session.create_state(model, optax.sgd(0.0), 2, jax.random.key(0))
  batch = {"inputs": jnp.array([1, 2]), "targets": jnp.array([3, 4]),
           "reset": jnp.array([True, True]), "valid": jnp.array([True, True]),
           "negatives": jnp.array([1, 3, 2], jnp.int32)}
  step = jax.jit(functools.partial(
      session.train_step, log_counts=log_counts,
      train_config=_train_config(logq=1.0), elu=0.0, sample_alpha=0.5))
  _, m = step(state, batch, jax.random.key(0))
  _, logits = model.apply({"params": state.params}, state.hidden,
                          batch["inputs"], jnp.array([3, 4, 1, 3, 2]))
  log_q = np.log([9, 2, 5 ** .5, 9 ** .5, 1 ** .5])
  z = np.asarray(logits) - log_q[None, :]
  ref = -(np.diag(z[:, :2]) - np.log(np.exp(z).sum(axis=1))).sum() / 2
  np.testing.assert_allclose(m["loss"], ref, rtol=1e-5)


def _bpr_max_ref(logits, columns, bpreg):
  out = []
  for b, row in enumerate(np.asarray(logits, np.float64)):
    neg = [j for j in range(row.size) if j != b and columns[j]]
    s = np.exp(row[neg]) / np.exp(row[neg]).sum()
    sig = 1 / (1 + np.exp(-(row[b] - row[neg])))
    out.append(-np.log((s * sig).sum()) + bpreg * (s * row[neg] ** 2).sum())
  return np.array(out)


def test_bpr_max_and_top1_max_match_brute_force():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(4, 9)), jnp.float32)
  columns = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1], bool)
  got = L.bpr_max(logits, jnp.asarray(columns), bpreg=0.5)
  np.testing.assert_allclose(np.asarray(got)[[0, 1, 3]],
                             _bpr_max_ref(logits, columns, 0.5)[[0, 1, 3]],
                             rtol=1e-4)
  top1 = L.top1_max(logits, jnp.asarray(columns))
  row = np.asarray(logits[1], np.float64)
  neg = [j for j in range(9) if j != 1 and columns[j]]
  s = np.exp(row[neg]) / np.exp(row[neg]).sum()
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  ref = (s * (sig(row[neg] - row[1]) + sig(row[neg] ** 2))).sum()
  np.testing.assert_allclose(top1[1], ref, rtol=1e-4)


def _table_ranks(table, seqs):
  """Brute force: rank of each next item after each input, items 1..n."""
  out = []
  for seq in seqs:
    for a, b in zip(seq[:-1], seq[1:]):
      row = table[a, 1:]
      out.append(int(np.sum(row >= row[b - 1]) - 1))
  return np.array(out)


def test_evaluation_targets_the_next_item_never_the_input():
  seqs = [[1, 2, 3], [4, 5], [2, 4, 1, 3]]
  sessions = _sessions(seqs, 5)
  # A model that always predicts a repeat of the input: never a hit.
  repeat = jnp.eye(6, dtype=jnp.float32)
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.table_step, repeat), (), sessions, 2)
  assert (ranks >= 1).all()
  # A model that predicts the true next item: always rank 0.
  oracle = np.zeros((6, 6), np.float32)
  for seq in seqs:
    for a, b in zip(seq[:-1], seq[1:]):
      oracle[a, b] = 1.0
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.table_step, jnp.asarray(oracle)),
      (), sessions, 2)
  np.testing.assert_array_equal(ranks, _table_ranks(oracle, seqs))
  # Items 1, 2 and 4 each have two recorded successors, tied: pessimistic
  # rank 1; item 3 is never an input.
  assert ranks.tolist() == [1] * 6
  unique = _sessions([[1, 2, 3], [4, 5]], 5)
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.table_step, jnp.asarray(oracle)),
      (), unique, 2)
  assert ranks.tolist() == [1, 1, 1]
  oracle[1, 3] = oracle[2, 4] = oracle[4, 1] = 0.0
  ranks = session_eval.event_ranks(
      jax.tree_util.Partial(session_eval.table_step, jnp.asarray(oracle)),
      (), unique, 2)
  assert ranks.tolist() == [0, 0, 0]
  table = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
  np.testing.assert_array_equal(
      session_eval.event_ranks(jax.tree_util.Partial(
          session_eval.table_step, jnp.asarray(table)), (), sessions, 3),
      _table_ranks(table, seqs))


def _write_log(path, seqs, t0):
  lines = [S.HEADER]
  for s, seq in enumerate(seqs):
    lines += [f"{t0 + s}\t{100 + i}\t{t0 + s * 10 + k}"
              for k, i in enumerate(seq)]
  path.write_text("\n".join(lines) + "\n")


def test_gru4rec_learns_a_planted_transition_end_to_end(tmp_path):
  from experiments.configs import session_yoochoose
  rng = np.random.default_rng(0)
  n = 20
  def draw(k):  # sessions follow i -> i + 1 (mod n)
    starts = rng.integers(0, n, size=k)
    return [[(s + j) % n for j in range(rng.integers(2, 6))] for s in starts]
  root = tmp_path / "session" / "toy"
  root.mkdir(parents=True)
  train = draw(300)
  _write_log(root / "toy_train_tr.txt", train, 0)
  _write_log(root / "toy_train_full.txt", train, 0)
  _write_log(root / "toy_train_valid.txt", draw(40), 10_000)
  _write_log(root / "toy_test.txt", draw(40), 20_000)
  c = session_yoochoose.get_config()
  c.data.dir, c.data.name = str(tmp_path), "toy"
  c.model.layers = (16,)
  c.model.dropout_hidden = 0.0
  c.train.batch_size, c.train.n_sample, c.train.epochs = 8, 16, 2
  c.train.steps_per_call = 50
  c.eval.batch_size = 16
  result = session.train_and_evaluate(c, tmp_path / "run")
  assert result["test"]["session-full/Recall@10"] > 0.9
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["protocol"] == "session-full"
  # Refit: the epoch count chosen on validation, retrained on train_full.
  assert 1 <= saved["refit_epochs"] <= 2
  assert (tmp_path / "run" / "refit" / "metrics.jsonl").exists()


def test_user_sequences_final_state_equals_running_each_user_alone():
  from jaxrec.data import sequences
  from jaxrec.train import session_seq
  seqs = sequences.UserSequences(
      np.array([0, 0, 3, 4, 4, 8]), np.array([1, 2, 3, 4, 5, 6, 7, 8],
                                             np.int32))  # users 1..4
  users = np.array([1, 2, 4])  # user 3 has no items
  sess, kept = session_seq.as_sessions(seqs, users, 8, dummy_target=True)
  np.testing.assert_array_equal(kept, users)
  np.testing.assert_array_equal(sess.items, [1, 2, 3, 0, 4, 0, 5, 6, 7, 8, 0])
  train, kept = session_seq.as_sessions(seqs, np.arange(1, 5), 8)
  np.testing.assert_array_equal(kept, [1, 4])  # length >= 2 only
  model = gru4rec.GRU4Rec(n_items=8, layers=(4,))
  params = model.init(jax.random.key(0), gru4rec.zero_hidden((4,), 1),
                      jnp.ones(1, jnp.int32), jnp.ones(1, jnp.int32))
  step = jax.tree_util.Partial(functools.partial(
      session_seq._gru_outputs, model), params["params"])
  table = session_seq.final_outputs(step, (4,), sess, users, 4, 2)
  for u in users:
    h = gru4rec.zero_hidden((4,), 1)
    for item in seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]]:
      h, out = model.apply(params, h, jnp.array([item]), method="step")
    np.testing.assert_allclose(table[u], out[0], rtol=1e-5, atol=1e-6)
