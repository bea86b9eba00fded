"""The train step: compiled once, no hidden transfers, state donated."""

import jax
import numpy as np
import optax
import pytest

from jaxrec import parallel
from jaxrec.models.mf import MF
from jaxrec.train import setup, tasks


def _batches(rng, steps=4, batch=32):
  return {"user": rng.integers(1, 11, (steps, batch)).astype(np.int32),
          "item": rng.integers(1, 9, (steps, batch)).astype(np.int32),
          "label": rng.integers(0, 2, (steps, batch)).astype(np.float32)}


def _state():
  return setup.create_state(MF(n_users=10, n_items=8, dim=4),
                            optax.adam(0.01), jax.random.key(0))


@pytest.mark.parametrize("kind", ["single", "pmap", "mesh"])
def test_step_is_traced_once_across_calls(kind):
  traces = []

  def counted_loss(*args):
    traces.append(1)  # runs only while tracing
    return tasks.pointwise_loss(*args)

  launcher = parallel.make_launcher(kind, counted_loss, 32)
  state = launcher.put_state(_state())
  rng = np.random.default_rng(0)
  for _ in range(3):
    state, _ = launcher.run(state, launcher.put_batches(_batches(rng)),
                            jax.random.key(0))
  assert len(traces) == 1
  assert int(launcher.get_state(state).step) == 12


def test_steps_make_no_implicit_host_transfers():
  launcher = parallel.make_launcher("single", tasks.pointwise_loss, 32)
  state = launcher.put_state(_state())
  rng = np.random.default_rng(0)
  placed = [launcher.put_batches(_batches(rng)) for _ in range(3)]
  key = jax.device_put(jax.random.key(0))
  state, _ = launcher.run(state, placed[0], key)  # compile outside the guard
  with jax.transfer_guard("disallow"):
    for batch in placed[1:]:
      state, metrics = launcher.run(state, batch, key)
  assert np.isfinite(jax.device_get(metrics["loss"])).all()


def test_state_is_donated():
  launcher = parallel.make_launcher("single", tasks.pointwise_loss, 32)
  state = launcher.put_state(_state())
  old = state.params["item_embed"]["embedding"]
  launcher.run(state, launcher.put_batches(
      _batches(np.random.default_rng(0))), jax.random.key(0))
  assert old.is_deleted()
