"""pmap and mesh launchers match one device (8 forced CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec import parallel
from jaxrec.models.mf import MF
from jaxrec.train import setup, tasks


def _state():
  model = MF(n_users=50, n_items=40, dim=8)
  return setup.create_state(model, optax.adam(0.05), jax.random.key(0))


def _batches(rng, steps, batch):
  return {"user": rng.integers(1, 51, (steps, batch)).astype(np.int32),
          "pos": rng.integers(1, 41, (steps, batch)).astype(np.int32),
          "neg": rng.integers(1, 41, (steps, batch)).astype(np.int32)}


def _train(kind, calls=3, steps=4, batch=64):
  launcher = parallel.make_launcher(kind, tasks.pairwise_loss, batch)
  state = launcher.put_state(_state())
  rng = np.random.default_rng(0)
  losses = []
  for _ in range(calls):
    state, metrics = launcher.run(
        state, launcher.put_batches(_batches(rng, steps, batch)),
        jax.random.key(1))
    losses.append(np.asarray(metrics["loss"]))
  return launcher.get_state(state), np.concatenate(losses)


def test_there_are_eight_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize("kind", ["pmap", "mesh"])
def test_launcher_matches_single_device(kind):
  ref_state, ref_loss = _train("single")
  state, loss = _train(kind)
  assert int(state.step) == int(ref_state.step) == 12
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
               state.params, ref_state.params)
  # Training moved the parameters: equality is not trivial.
  start = _state().params
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                       state.params, start)
  assert max(jax.tree.leaves(moved)) > 1e-3


@pytest.mark.parametrize("kind", ["pmap", "mesh"])
def test_batch_that_does_not_divide_is_a_clear_error(kind):
  with pytest.raises(ValueError, match="does not divide by the 8 devices"):
    parallel.make_launcher(kind, tasks.pairwise_loss, 60)


def test_unknown_launcher_is_an_error():
  with pytest.raises(ValueError, match="unknown launcher"):
    parallel.make_launcher("tpu-pod", tasks.pairwise_loss, 64)


@pytest.mark.parametrize("kind", ["pmap", "mesh"])
def test_batches_are_spread_over_every_device(kind):
  launcher = parallel.make_launcher(kind, tasks.pairwise_loss, 64)
  batch = launcher.put_batches(_batches(np.random.default_rng(0), 2, 64))
  for leaf in jax.tree.leaves(batch):
    assert len(leaf.sharding.device_set) == 8
    shard_rows = {s.data.shape for s in leaf.addressable_shards}
    assert shard_rows == ({(1, 2, 8)} if kind == "pmap" else {(2, 8)})
