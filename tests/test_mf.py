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
