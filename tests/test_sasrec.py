"""SASRec: causality by gradients, padding invariance, packing, the BCE and
softmax losses, and a tiny end-to-end run of the 'sequential' family."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import sasrec_games
from jaxrec.data import splits
from jaxrec.models.sasrec import SASRec
from jaxrec.train import sequential

L = 8


def _model(**kw):
  model = SASRec(n_items=30, max_len=L, dim=16, num_heads=2, dropout=0.2,
                 **kw)
  params = model.init(jax.random.key(0), jnp.ones((1, L), jnp.int32))
  return model, params


def position_jacobian(model, params, seq):
  """(t, s): |d output[0, t] / d position-embedding row of input column s|,
  the output projected on a fixed random direction (a plain sum would be
  constant after a layer norm)."""
  direction = jax.random.normal(jax.random.key(9), (model.dim,))

  def out(pos_table):
    p = {"params": {**params["params"],
                    "pos_embed": {"embedding": pos_table}}}
    return model.apply(p, seq)[0] @ direction          # (L,)

  jac = jax.jit(jax.jacrev(out))(params["params"]["pos_embed"]["embedding"])
  rows = np.arange(L - seq.shape[1], L)      # right-aligned position ids
  return np.abs(np.asarray(jac)[:, rows]).sum(-1)


def test_output_at_t_has_zero_gradient_from_every_later_input():
  seq = jnp.array([[3, 7, 1, 9, 4, 2, 8, 5]])
  for pre_ln, code in ((True, False), (False, False), (True, True)):
    model, params = _model(pre_ln=pre_ln, sasrec_code=code)
    jac = position_jacobian(model, params, seq)
    later = np.triu(np.ones((L, L), bool), k=1)        # s > t
    assert (jac[later] == 0).all(), (pre_ln, code)
    assert (jac[~later] > 0).all(), (pre_ln, code)


@pytest.mark.parametrize("code", [False, True])
def test_left_padding_and_packing_do_not_change_scores(code):
  model, params = _model(sasrec_code=code)
  short = jnp.array([[5, 6, 7]])
  cands = jnp.arange(31)
  ref = model.apply(params, short, cands, method="score")
  for width in (4, L):
    padded = jnp.pad(short, ((0, 0), (width - 3, 0)))
    np.testing.assert_allclose(model.apply(params, padded, cands,
                                           method="score"), ref, atol=1e-5)
  # Packed beside another sequence, with its own segment and positions.
  packed = jnp.array([[1, 2, 3, 4, 5, 6, 7, 0]])
  segment = jnp.array([[1, 1, 1, 1, 2, 2, 2, 0]])
  position = jnp.array([[4, 5, 6, 7, 5, 6, 7, 0]])
  hidden = model.apply(params, packed, segment=segment, position=position)
  np.testing.assert_allclose(hidden[0, 6], model.apply(params, short)[0, -1],
                             atol=1e-5)


def test_shared_and_per_row_candidates_agree():
  model, params = _model()
  seq = jnp.array([[0, 0, 1, 2], [3, 4, 5, 6]])
  shared = model.apply(params, seq, jnp.arange(1, 31), method="score")
  per_row = model.apply(params, seq, jnp.tile(jnp.arange(1, 31), (2, 1)),
                        method="score")
  np.testing.assert_allclose(shared, per_row, rtol=1e-5, atol=1e-5)


def _packed_batch(**targets):
  """Two packed rows: row 0 holds a padded segment, row 1 a full one."""
  return {"seq": jnp.array([[0, 0, 1, 2], [3, 4, 5, 6]]),
          "segment": jnp.array([[0, 0, 1, 1], [1, 1, 1, 1]]),
          "position": jnp.array([[0, 0, 6, 7], [4, 5, 6, 7]]), **targets}


def _loss_and_hidden(loss_fn, model, params, batch):
  """(loss, training-mode outputs (B, L, D) under the same dropout key)."""
  key = jax.random.key(3)
  loss, _ = loss_fn(params["params"], batch, key, model.apply)
  h = model.apply(params, batch["seq"], train=True, segment=batch["segment"],
                  position=batch["position"], rngs={"dropout": key})
  return loss, np.asarray(h)


def test_bce_loss_matches_reference():
  model, params = _model(pre_ln=True)
  batch = _packed_batch(pos=jnp.array([[0, 0, 2, 9], [4, 5, 6, 7]]),
                        neg=jnp.array([[0, 0, 11, 12], [13, 14, 15, 16]]))
  loss, h = _loss_and_hidden(sequential.next_item_bce, model, params, batch)
  emb = np.asarray(params["params"]["item_embed"]["embedding"])
  total, count = 0.0, 0
  for b in range(2):
    for t in range(4):
      if batch["pos"][b, t]:
        p = h[b, t] @ emb[batch["pos"][b, t]]
        n = h[b, t] @ emb[batch["neg"][b, t]]
        total += np.log1p(np.exp(-p)) + np.log1p(np.exp(n))
        count += 1
  np.testing.assert_allclose(loss, total / count, rtol=1e-5)


def test_softmax_loss_matches_reference():
  model, params = _model()
  batch = _packed_batch(pos=jnp.array([[0, 0, 2, 9], [4, 5, 6, 30]]))
  loss, h = _loss_and_hidden(sequential.next_item_softmax, model, params,
                             batch)
  emb = np.asarray(params["params"]["item_embed"]["embedding"], np.float64)
  want = []
  for b, t in zip(*np.nonzero(np.asarray(batch["pos"]))):
    logits = emb[1:] @ h[b, t]                  # items 1..30, never padding
    answer = batch["pos"][b, t] - 1
    want.append(np.log(np.exp(logits).sum()) - logits[answer])
  np.testing.assert_allclose(loss, np.mean(want), rtol=1e-5)


def _tiny_config(tmp_path, **overrides):
  # A planted signal: every user walks the items in order from a random
  # start, so the next item is always current + 1.
  rng = np.random.default_rng(0)
  lines = []
  for u in range(1, 61):
    start = rng.integers(1, 14)
    lines += [f"{u} {i}\n" for i in range(start, start + rng.integers(5, 9))]
  folder = tmp_path / "data" / "sasrec"
  folder.mkdir(parents=True)
  (folder / "Video.txt").write_text("".join(lines))
  c = sasrec_games.get_config()
  c.data.dir = str(tmp_path / "data")
  c.model.update(dict(max_len=6, dim=16, num_heads=1, dropout=0.0))
  c.train.update(dict(batch_size=16, epochs=20, steps_per_call=4))
  c.optim.learning_rate = 0.01
  c.eval.update(dict(every_epochs=10, n_negatives=10, widths=()))
  for k, v in overrides.items():
    *path, leaf = k.split(".")
    node = c
    for p in path:
      node = node[p]
    node[leaf] = v
  return c


def test_train_and_evaluate_end_to_end(tmp_path):
  config = _tiny_config(tmp_path)
  result = sequential.train_and_evaluate(config, tmp_path / "run")
  assert result["protocol"] == "sampled-uniform-10"
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["test"] == result["test"]
  # The planted successor is learnt: far above chance (1/11 for HR@1).
  assert result["test"]["sampled-uniform-10/HR@1"] > 0.5
  assert result["test"]["full/HR@10"] > 0.5
  assert result["epochs"] == 20 and result["train_seconds"] > 0
  assert np.load(tmp_path / "run" / "per_user.npz")[
      "test/full/HR@10"].shape == (60,)


@pytest.mark.parametrize("code", [False, True])
@pytest.mark.parametrize("change", [dict(causal_block=3),
                                    dict(causal_block=3, row_block=1),
                                    dict(row_groups=2),
                                    dict(causal_block=3, row_groups=5)])
def test_causal_and_row_blocks_change_no_score(code, change):
  """causal_block only skips the hidden upper triangle, row_block and
  row_groups only split the batch: same hidden states at every real
  position, and still causal."""
  model, params = _model(sasrec_code=code)
  blocked = model.clone(**change)
  seq = jnp.array([[0, 0, 3, 7, 1, 9, 4, 2], [3, 7, 1, 9, 4, 2, 8, 5]])
  real = np.asarray(seq != 0)
  np.testing.assert_allclose(np.asarray(blocked.apply(params, seq))[real],
                             np.asarray(model.apply(params, seq))[real],
                             atol=1e-5)
  jac = position_jacobian(blocked, params, seq[1:])
  later = np.triu(np.ones((L, L), bool), k=1)
  assert (jac[later] == 0).all() and (jac[~later] > 0).all()


def test_refit_trains_on_the_validation_item_and_never_the_test_item(
    tmp_path):
  config = _tiny_config(tmp_path)
  # Disjoint item ranges per user: a target item names its user.
  rng = np.random.default_rng(1)
  (tmp_path / "data" / "sasrec" / "Video.txt").write_text("".join(
      f"{u} {10 * u + i}\n" for u in range(1, 41)
      for i in range(rng.integers(4, 8))))
  split, _, _, _ = sequential.prepare(config, tmp_path / "run")
  merged = split.valid_in_train()
  splits.assert_no_leakage(merged)
  assert len(merged.valid) == 0
  model = sequential.build_model(config.model, split.train.n_items)
  targets = {}
  for name, s in (("plain", split), ("refit", merged)):
    batches, _ = sequential.make_epoch_batches(s, config, model)
    pos = batches(0, np.random.default_rng(0))["pos"]
    targets[name] = set(pos[pos != 0].tolist())
  valid, test = set(split.valid.items.tolist()), set(split.test.items.tolist())
  assert not targets["plain"] & (valid | test)
  assert valid <= targets["refit"] and not targets["refit"] & test
  assert targets["refit"] - valid == targets["plain"]


def test_refit_selects_epochs_on_validation_then_retrains(tmp_path):
  # Four trainings: one block and no attention blocking compile faster,
  # and the refit logic, not the model, is what this tests.
  config = _tiny_config(tmp_path, **{"model.num_blocks": 1,
                                     "model.causal_block": 0})
  plain = sequential.train_and_evaluate(config, tmp_path / "plain")
  config.train.refit = True
  refit = sequential.train_and_evaluate(config, tmp_path / "refit")
  assert refit["valid"] == plain["valid"]            # phase 1 is the same
  assert refit["refit_epochs"] in (10, 20)
  assert refit["test"] != plain["test"]
  assert refit["test"]["sampled-uniform-10/HR@1"] > 0.5
  assert (tmp_path / "refit" / "refit" / "metrics.jsonl").exists()
  # An epoch count fixed in advance (another seed's selection) skips phase
  # 1 and trains the same refit model: the same test, no validation.
  config.train.refit_epochs = refit["refit_epochs"]
  fixed = sequential.train_and_evaluate(config, tmp_path / "fixed")
  assert fixed["test"] == refit["test"] and "valid" not in fixed
  assert fixed["epochs"] == fixed["refit_epochs"] == refit["refit_epochs"]
  assert not (tmp_path / "fixed" / "checkpoints").exists()
