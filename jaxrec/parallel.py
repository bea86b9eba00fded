"""Data parallelism: the only module that names devices.

One train step, three launchers with one interface:
  * 'single': `jit` on the first local device;
  * 'pmap':   `jax.pmap` of a per-device step whose gradients are averaged
              with `lax.pmean` over the 'data' axis; the state carries a
              leading device axis;
  * 'mesh':   `jit` over a 1-D `Mesh` of all devices, the state replicated
              and the batch sharded with `NamedSharding`; XLA inserts the
              gradient all-reduce.
Each runs S steps per dispatch (`scan_steps`).  Multi-host: call
`initialize_distributed()` first; 'mesh' then spans every host's devices and
each host feeds its own slice of the batch.

Legend: D = devices, S = steps per dispatch, B = global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.train.step import make_train_step, scan_steps

DATA_AXIS = "data"
KINDS = ("single", "pmap", "mesh")


def initialize_distributed() -> None:
  """Joins JAX's distributed runtime (multi-host); a no-op on one process
  unless the cluster environment variables are set."""
  jax.distributed.initialize()


@dataclasses.dataclass(frozen=True)
class Launcher:
  """How train steps run.

  Attributes:
    kind: one of KINDS.
    n_devices: devices the global batch is split over.
    put_state: state on the host or one device -> the launcher's layout.
    get_state: the launcher's layout -> one logical state on one device
      (for evaluation and checkpoints).
    put_batches: numpy pytree with leaves (S, B, ...) -> the device layout.
    run: (state, batches, key) -> (state, metrics with leaves (S,)).
  """

  kind: str
  n_devices: int
  put_state: Callable[[Any], Any]
  get_state: Callable[[Any], Any]
  put_batches: Callable[[Any], Any]
  run: Callable[..., tuple[Any, dict]]


def make_launcher(kind: str, loss_fn, batch_size: int,
                  devices: list | None = None,
                  train_step: Callable | None = None,
                  make_step: Callable | None = None) -> Launcher:
  """Builds a launcher; raises ValueError if the batch does not divide.

  `train_step(state, batch, key) -> (state, metrics)` replaces the step
  built from `loss_fn` (stateful training, e.g. a carried RNN state); only
  the 'single' launcher takes one, since its state is not data-parallel.
  `make_step(axis_name) -> train_step` replaces `make_train_step(loss_fn,
  axis_name)` with a step that averages over `axis_name` itself when it
  is not None (e.g. jaxrec.train.row_sparse's); 'single' and 'pmap' only.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown launcher {kind!r}; expected one of {KINDS}")
  if train_step is not None and kind != "single":
    raise ValueError(f"a custom train_step runs on the 'single' launcher "
                     f"only, not {kind!r}")
  if make_step is not None and kind == "mesh":
    raise ValueError("a custom make_step runs on the 'single' or 'pmap' "
                     "launcher, not 'mesh'")
  make_step = make_step or (lambda axis: make_train_step(loss_fn, axis))
  if kind == "single":
    devices = (devices or jax.local_devices())[:1]
  elif kind == "pmap":
    devices = devices or jax.local_devices()
  else:
    devices = devices or jax.devices()
  if batch_size % len(devices):
    raise ValueError(
        f"batch size {batch_size} does not divide by the {len(devices)} "
        f"devices of the {kind!r} launcher; use a multiple of {len(devices)}")
  if kind == "single":
    return _single(train_step or make_step(None), devices)
  if kind == "pmap":
    return _pmap(make_step(DATA_AXIS), devices)
  return _mesh(loss_fn, devices)


def _single(train_step, devices) -> Launcher:
  device = devices[0]
  put = lambda tree: jax.device_put(tree, device)
  # A copy, so that donating the state never deletes the caller's arrays
  # (e.g. a template that is also the restore target).
  put_state = lambda tree: jax.device_put(tree, device, may_alias=False)
  run = jax.jit(scan_steps(train_step), donate_argnums=0)
  return Launcher("single", 1, put_state, lambda s: s, put, run)


def _pmap(train_step, devices) -> Launcher:
  n = len(devices)
  mesh = Mesh(np.array(devices), (DATA_AXIS,))
  stacked = NamedSharding(mesh, P(DATA_AXIS))

  def put_state(state):
    return jax.tree.map(
        lambda x: jax.device_put(jnp.stack([jnp.asarray(x)] * n), stacked),
        state)

  def get_state(state):
    return jax.tree.map(lambda x: jax.device_put(x[0], devices[0]), state)

  def put_batches(batches):
    # (S, B, ...) -> (D, S, B / D, ...): device d gets rows d*B/D:(d+1)*B/D.
    def split(x):
      s, b = x.shape[:2]
      x = x.reshape((s, n, b // n) + x.shape[2:])
      return jax.device_put(np.swapaxes(x, 0, 1), stacked)
    return jax.tree.map(split, batches)

  mapped = jax.pmap(scan_steps(train_step), axis_name=DATA_AXIS,
                    in_axes=(0, 0, None), devices=devices, donate_argnums=0)

  def run(state, batches, key):
    state, metrics = mapped(state, batches, key)
    # Equal on every device after pmean; a static slice, not m[0], which
    # would send the index to the device on every call.
    return state, jax.tree.map(
        lambda m: jax.lax.index_in_dim(m, 0, keepdims=False), metrics)

  return Launcher("pmap", n, put_state, get_state, put_batches, run)


def _mesh(loss_fn, devices) -> Launcher:
  mesh = Mesh(np.array(devices), (DATA_AXIS,))
  replicated = NamedSharding(mesh, P())
  by_row = NamedSharding(mesh, P(None, DATA_AXIS))

  def put_batches(batches):
    # Each process passes its local rows; on one host that is all of them.
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(by_row, x), batches)

  jitted = jax.jit(scan_steps(make_train_step(loss_fn)),
                   out_shardings=(replicated, replicated), donate_argnums=0)

  def run(state, batches, key):
    return jitted(state, batches, jax.device_put(key, replicated))

  return Launcher(
      "mesh", len(devices),
      put_state=lambda s: jax.device_put(s, replicated, may_alias=False),
      get_state=lambda s: jax.device_put(s, jax.local_devices()[0]),
      put_batches=put_batches, run=run)
