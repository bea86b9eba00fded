"""MF: shapes, parameter count, score consistency, padding rows."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.models.mf import MF
from jaxrec.train import setup, tasks


@pytest.mark.parametrize("use_bias", [False, True])
def test_shapes_and_parameter_count(use_bias):
  model = MF(n_users=10, n_items=7, dim=4, use_bias=use_bias)
  state = setup.create_state(model, optax.sgd(0.1), jax.random.key(0))
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  assert n_params == 11 * 4 + 8 * 4 + (11 + 8 + 1 if use_bias else 0)
  users = jnp.array([1, 2, 3], jnp.int32)
  shared = model.apply({"params": state.params}, users, jnp.arange(8),
                       method="score")
  per_user = model.apply({"params": state.params}, users,
                         jnp.tile(jnp.arange(8), (3, 1)), method="score")
  assert shared.shape == per_user.shape == (3, 8)
  np.testing.assert_allclose(shared, per_user, rtol=1e-5, atol=1e-6)
  pairs = model.apply({"params": state.params}, users,
                      jnp.array([4, 5, 6], jnp.int32))
  np.testing.assert_allclose(pairs, shared[jnp.arange(3), jnp.array([4, 5, 6])],
                             rtol=1e-5, atol=1e-6)


def test_score_is_the_dot_product_plus_biases():
  model = MF(n_users=3, n_items=4, dim=2, use_bias=True)
  params = {"user_embed": {"embedding": jnp.arange(8.).reshape(4, 2)},
            "item_embed": {"embedding": jnp.ones((5, 2))},
            "user_bias": {"embedding": jnp.full((4, 1), 0.5)},
            "item_bias": {"embedding": jnp.arange(5.)[:, None]},
            "global_bias": jnp.array(10.)}
  got = model.apply({"params": params}, jnp.array([2]), jnp.array([3]))
  assert float(got[0]) == (4 + 5) + 0.5 + 3 + 10


def test_padding_rows_are_never_trained():
  model = MF(n_users=20, n_items=15, dim=4)
  state = setup.create_state(model, optax.adam(0.1), jax.random.key(0))
  before = jax.tree.map(np.asarray, state.params)
  step = jax.jit(lambda s, b: tasks.pointwise_loss(s.params, b, None,
                                                   s.apply_fn))
  rng = np.random.default_rng(0)
  batch = {"user": rng.integers(1, 21, 64).astype(np.int32),
           "item": rng.integers(1, 16, 64).astype(np.int32),
           "label": rng.integers(0, 2, 64).astype(np.float32)}
  grads = jax.grad(lambda p: tasks.pointwise_loss(
      p, batch, None, state.apply_fn)[0])(state.params)
  state = state.apply_gradients(grads=grads)
  del step
  for table in ("user_embed", "item_embed"):
    after = np.asarray(state.params[table]["embedding"])
    np.testing.assert_array_equal(after[0], before[table]["embedding"][0])
    assert not np.allclose(after[1:], before[table]["embedding"][1:])


def test_l2_adds_the_rows_squared_norms():
  model = MF(n_users=5, n_items=4, dim=3)
  state = setup.create_state(model, optax.sgd(0.1), jax.random.key(0))
  batch = {"user": jnp.array([1, 2, 2], jnp.int32),
           "item": jnp.array([1, 1, 4], jnp.int32),
           "label": jnp.array([1.0, 0.0, 1.0])}
  plain, _ = tasks.pointwise_loss(state.params, batch, None, state.apply_fn)
  reg, _ = tasks.pointwise_loss(state.params, batch, None, state.apply_fn,
                                l2=0.5)
  p = state.params
  norms = (np.sum(np.asarray(p["user_embed"]["embedding"])[[1, 2, 2]] ** 2,
                  -1) +
           np.sum(np.asarray(p["item_embed"]["embedding"])[[1, 1, 4]] ** 2,
                  -1))
  np.testing.assert_allclose(float(reg - plain), 0.5 * norms.mean(),
                             rtol=1e-5)


def test_bpr_l2_adds_the_user_positive_and_negative_norms():
  model = MF(n_users=5, n_items=4, dim=3)
  state = setup.create_state(model, optax.sgd(0.1), jax.random.key(0))
  batch = {"user": jnp.array([1, 2, 2], jnp.int32),
           "pos": jnp.array([1, 1, 4], jnp.int32),
           "neg": jnp.array([3, 2, 2], jnp.int32)}
  plain, _ = tasks.pairwise_loss(state.params, batch, None, state.apply_fn)
  reg, _ = tasks.pairwise_loss(state.params, batch, None, state.apply_fn,
                               l2=0.5)
  users = np.asarray(state.params["user_embed"]["embedding"])
  items = np.asarray(state.params["item_embed"]["embedding"])
  norms = (np.sum(users[[1, 2, 2]] ** 2, -1) +
           np.sum(items[[1, 1, 4]] ** 2, -1) +
           np.sum(items[[3, 2, 2]] ** 2, -1))
  np.testing.assert_allclose(float(reg - plain), 0.5 * norms.mean(),
                             rtol=1e-5)


def _with_biases(params, seed=1):
  """params with the bias tables and global bias set to random values."""
  rng = np.random.default_rng(seed)
  out = jax.tree_util.tree_map(np.asarray, params)
  for table in ("user_bias", "item_bias"):
    shape = out[table]["embedding"].shape
    out[table] = {"embedding": rng.normal(size=shape).astype(np.float32)}
  out["global_bias"] = np.float32(0.7)
  return jax.tree_util.tree_map(jnp.asarray, out)


def test_l2_biases_adds_the_rows_squared_biases():
  model = MF(n_users=5, n_items=4, dim=3, use_bias=True, l2_biases=True)
  state = setup.create_state(model, optax.sgd(0.1), jax.random.key(0))
  params = _with_biases(state.params)
  batch = {"user": jnp.array([1, 2, 2], jnp.int32),
           "item": jnp.array([1, 1, 4], jnp.int32),
           "label": jnp.array([1.0, 0.0, 1.0])}
  plain, _ = tasks.pointwise_loss(params, batch, None, state.apply_fn)
  reg, _ = tasks.pointwise_loss(params, batch, None, state.apply_fn, l2=0.5)
  p = jax.tree_util.tree_map(np.asarray, params)
  users, items = [1, 2, 2], [1, 1, 4]
  norms = (np.sum(p["user_embed"]["embedding"][users] ** 2, -1) +
           np.sum(p["item_embed"]["embedding"][items] ** 2, -1) +
           p["user_bias"]["embedding"][users, 0] ** 2 +
           p["item_bias"]["embedding"][items, 0] ** 2 +
           p["global_bias"] ** 2)
  np.testing.assert_allclose(float(reg - plain), 0.5 * norms.mean(),
                             rtol=1e-5)


def test_one_sgd_step_is_rendle_et_al_per_example_update():
  # mf_simple.py: with g = label - sigmoid(logit), every parameter p of the
  # example moves by rate * (g * dlogit/dp - reg * p).  Our loss adds
  # train.l2 * ||p||^2, so train.l2 = reg / 2 gives the same step.
  rate, reg = 0.05, 0.2
  model = MF(n_users=3, n_items=4, dim=3, use_bias=True, l2_biases=True)
  state = setup.create_state(model, optax.sgd(rate), jax.random.key(0))
  params = _with_biases(state.params)
  batch = {"user": jnp.array([2], jnp.int32), "item": jnp.array([3], jnp.int32),
           "label": jnp.array([0.0])}
  grads = jax.grad(lambda q: tasks.pointwise_loss(
      q, batch, None, state.apply_fn, l2=reg / 2)[0])(params)
  after = jax.tree_util.tree_map(lambda p, g: np.asarray(p - rate * g),
                                 params, grads)
  p = jax.tree_util.tree_map(np.asarray, params)
  u, v = p["user_embed"]["embedding"][2], p["item_embed"]["embedding"][3]
  bu, bi = p["user_bias"]["embedding"][2, 0], p["item_bias"]["embedding"][3, 0]
  logit = u @ v + bu + bi + p["global_bias"]
  g = 0.0 - 1.0 / (1.0 + np.exp(-logit))
  expect = {"user_embed": u + rate * (g * v - reg * u),
            "item_embed": v + rate * (g * u - reg * v),
            "user_bias": bu + rate * (g - reg * bu),
            "item_bias": bi + rate * (g - reg * bi)}
  rows = {"user_embed": 2, "item_embed": 3, "user_bias": 2, "item_bias": 3}
  for name, want in expect.items():
    got = after[name]["embedding"][rows[name]]
    np.testing.assert_allclose(np.squeeze(got), want, rtol=1e-5, atol=1e-6)
  b = p["global_bias"]
  np.testing.assert_allclose(after["global_bias"], b + rate * (g - reg * b),
                             rtol=1e-5)


def test_l2_biases_needs_biases():
  model = MF(n_users=3, n_items=4, dim=2, l2_biases=True)
  with pytest.raises(ValueError, match="use_bias"):
    setup.create_state(model, optax.sgd(0.1), jax.random.key(0))
