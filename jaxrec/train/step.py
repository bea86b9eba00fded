"""One pure train step per task, and a scan that runs many of them.

`train_step(state, batch, key) -> (state, metrics)` is defined once by
`make_train_step(loss_fn)`; the launchers in `jaxrec.parallel` jit it (with
the state donated) on one device, with pmap, or over a mesh.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax.training import train_state

TrainState = train_state.TrainState
# loss_fn(params, batch, key, apply_fn) -> (mean loss, dict of scalars)
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, axis_name: str | None = None):
  """Returns `train_step(state, batch, key) -> (state, metrics)`.

  Args:
    loss_fn: the task's loss, a mean over the (per-device) batch.
    axis_name: when the step runs under `pmap`, the mapped axis; gradients
      and metrics are averaged over it with `lax.pmean`.
  """

  def train_step(state: TrainState, batch: Any, key: jax.Array):
    # Per-step randomness from the step counter, so resuming replays it.
    key = jax.random.fold_in(key, state.step)

    def objective(params):
      return loss_fn(params, batch, key, state.apply_fn)

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    metrics = {"loss": loss, **aux}
    if axis_name is not None:
      grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    return state.apply_gradients(grads=grads), metrics

  return train_step


def scan_steps(train_step):
  """Runs `train_step` over batches stacked on a leading axis (S, ...).

  Returns `multi_step(state, batches, key) -> (state, metrics (S,))`: one
  dispatch for S steps, so small models are not bound by Python overhead.
  """

  def multi_step(state, batches, key):
    return jax.lax.scan(lambda s, b: train_step(s, b, key), state, batches)

  return multi_step
