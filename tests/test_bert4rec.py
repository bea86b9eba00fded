"""BERT4Rec: bidirectional dependence by gradients, padding invariance, the
masked-item loss against brute force, and the paper's optimiser defaults."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.models.bert4rec import BERT4Rec
from jaxrec.train import sequential

L = 8


def _model():
  model = BERT4Rec(n_items=30, max_len=L, dim=16, num_heads=2, dropout=0.1)
  params = model.init(jax.random.key(0), jnp.ones((1, L), jnp.int32))
  return model, params


def test_output_at_t_depends_on_both_sides_and_not_on_padding():
  model, params = _model()
  seq = jnp.array([[0, 0, 3, 7, 31, 9, 4, 2]])   # two pads, one [mask]
  direction = jax.random.normal(jax.random.key(9), (model.dim,))

  def out(pos_table):
    p = {"params": {**params["params"],
                    "pos_embed": {"embedding": pos_table}}}
    return model.apply(p, seq)[0] @ direction           # (L,)

  jac = jax.jit(jax.jacrev(out))(params["params"]["pos_embed"]["embedding"])
  jac = np.abs(np.asarray(jac)).sum(-1)                 # (t, s)
  for t in range(2, L):
    assert (jac[t, 2:] > 0).all(), t      # every real input, before and after
    assert (jac[t, :2] == 0).all(), t     # never the padding


def test_left_padding_does_not_change_scores():
  model, params = _model()
  score = jax.jit(lambda s, c: model.apply(params, s, c, method="score"))
  short = jnp.array([[5, 6, 7]])
  cands = jnp.arange(31)
  ref = score(short, cands)
  for width in (5, L):
    np.testing.assert_allclose(
        score(jnp.pad(short, ((0, 0), (width - 3, 0))), cands), ref,
        atol=1e-5)


def test_score_reads_a_mask_appended_after_the_history():
  model, params = _model()
  seq = jnp.array([[0, 1, 2, 3]])
  out = model.apply(params, jnp.array([[1, 2, 3, 31]]))[:, -1]
  table = params["params"]["item_embed"]["embedding"]
  bias = params["params"]["output_bias"]
  want = out @ table[1:31].T + bias[None, 1:31]
  np.testing.assert_allclose(
      model.apply(params, seq, jnp.arange(1, 31), method="score"), want,
      rtol=1e-5, atol=1e-5)


def test_masked_item_loss_is_softmax_over_all_items():
  model, params = _model()
  batch = {"seq": jnp.array([[0, 31, 2, 31], [4, 31, 6, 7]]),
           "segment": jnp.array([[0, 1, 1, 1], [1, 1, 2, 2]]),
           "position": jnp.array([[0, 5, 6, 7], [6, 7, 6, 7]]),
           "positions": jnp.array([1, 3, 5, 0]),
           "labels": jnp.array([9, 3, 5, 0]),
           "weights": jnp.array([1.0, 1.0, 1.0, 0.0])}
  key = jax.random.key(4)
  loss, _ = sequential.masked_item_ce(params["params"], batch, key,
                                      model.apply)
  out = model.apply(params, batch["seq"], train=True,
                    segment=batch["segment"], position=batch["position"],
                    rngs={"dropout": key})
  out = np.asarray(out).reshape(-1, model.dim)
  table = np.asarray(params["params"]["item_embed"]["embedding"])[:31]
  bias = np.asarray(params["params"]["output_bias"])[:31]
  losses = []
  for pos, label in zip([1, 3, 5], [9, 3, 5]):
    logits = (out[pos] @ table.T + bias)[1:]        # items 1..30 only
    losses.append(-(logits[label - 1] - np.log(np.exp(logits).sum())))
  np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)


def test_default_config_is_the_papers_optimiser():
  path = (Path(__file__).parents[1] / "experiments" / "configs" /
          "bert4rec_beauty.py")
  spec = importlib.util.spec_from_file_location("b4r", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert (c.optim.name, c.optim.learning_rate, c.optim.weight_decay,
          c.optim.clip_norm, c.optim.schedule) == ("adamw", 1e-4, 0.01, 5.0,
                                                   "linear")
  assert (c.train.loss, c.train.mask_prob, c.model.dim) == ("masked", 0.6,
                                                            64)
  # Decoupled weight decay shrinks kernels but not biases or norm scales,
  # and the linear schedule ends at zero.
  tx = sequential.build_optimizer(c.optim, total_steps=300)
  params = {"dense": {"kernel": jnp.ones(3), "bias": jnp.ones(3)},
            "ln": {"scale": jnp.ones(3)}, "output_bias": jnp.ones(3)}
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  step = jax.jit(tx.update)
  for _ in range(300):
    updates, state = step(zeros, state, params)
    params = optax.apply_updates(params, updates)
  assert (params["dense"]["kernel"] < 1).all()
  assert (params["dense"]["bias"] == 1).all()
  assert (params["ln"]["scale"] == 1).all()
  assert (params["output_bias"] == 1).all()
  updates, _ = step(zeros, state, params)
  assert np.allclose(updates["dense"]["kernel"], 0, atol=1e-12)  # lr -> 0


def test_sampled_softmax_option_drops_accidental_hits():
  model, params = _model()
  batch = {"seq": jnp.array([[0, 31, 2, 31]]),
           "segment": jnp.array([[0, 1, 1, 1]]),
           "position": jnp.array([[0, 5, 6, 7]]),
           "positions": jnp.array([1, 3]), "labels": jnp.array([9, 3]),
           "weights": jnp.array([1.0, 1.0]),
           "negatives": jnp.array([3, 17, 9, 25])}
  key = jax.random.key(5)
  loss, _ = sequential.masked_item_ce(params["params"], batch, key,
                                      model.apply)
  out = np.asarray(model.apply(
      params, batch["seq"], train=True, segment=batch["segment"],
      position=batch["position"], rngs={"dropout": key})).reshape(-1, 16)
  table = np.asarray(params["params"]["item_embed"]["embedding"])
  bias = np.asarray(params["params"]["output_bias"])
  losses = []
  for pos, label in ((1, 9), (3, 3)):
    cols = [label] + [n for n in (3, 17, 9, 25) if n != label]
    logits = out[pos] @ table[cols].T + bias[cols]
    losses.append(-(logits[0] - np.log(np.exp(logits).sum())))
  np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)


def test_mask_budget_covers_every_step_with_little_to_spare():
  """The budget (from seeded simulated epochs) holds every step's masks
  in real batches of other epochs, and wastes at most 5% + 128 slots
  over the fullest step."""
  import ml_collections
  from jaxrec.data import sequences
  rng = np.random.default_rng(0)
  n_users, width, steps, rows = 4000, 20, 5, 300
  lengths = np.concatenate([[0], rng.integers(1, width + 1, n_users)])
  users = np.arange(1, n_users + 1)
  table = np.zeros((n_users + 1, width), np.int32)
  for u in users:
    table[u, width - lengths[u]:] = rng.integers(1, 50, lengths[u])
  config = ml_collections.ConfigDict(dict(seed=0, train=dict(
      mask_prob=0.2, mask_last_share=0.1)))
  budget = sequential.mask_budget(lengths, users, width, steps, rows, config)
  fullest = 0
  for epoch in range(5):
    r = np.random.default_rng(100 + epoch)
    packing = sequences.packed_epoch(users, lengths, width, steps, rows, r)
    unlimited = sequences.masked_item_batches(
        table, packing, r, mask_prob=0.2, mask_id=51, mask_last_share=0.1,
        budget=10**4)
    fullest = max(fullest, int(unlimited["weights"].sum(1).max()))
  assert fullest <= budget <= 1.05 * fullest + 128


@pytest.mark.parametrize("change", [dict(row_block=2),
                                    dict(row_groups=2, row_block=2)])
def test_row_blocks_change_no_output_or_gradient(change):
  """row_block and row_groups only change how the batch is traversed:
  the same hidden states and parameter gradients without dropout."""
  model, params = _model()
  blocked = model.clone(**change)
  rng = np.random.default_rng(0)
  seq = jnp.asarray(rng.integers(0, 32, (5, L)), jnp.int32)
  np.testing.assert_allclose(blocked.apply(params, seq), model.apply(
      params, seq), rtol=1e-5, atol=1e-5)
  loss = lambda m: jax.jit(jax.grad(
      lambda p: jnp.sum(jnp.sin(m.apply(p, seq)))))(params)
  for got, want in zip(jax.tree.leaves(loss(blocked)),
                       jax.tree.leaves(loss(model))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
