"""A train step whose embedding tables take exact dense Adam row-sparsely.

`make_train_step(model, loss_fn, lr)` returns a drop-in for
`step.make_train_step(loss_fn)` on a state built with `optax.adam(lr)`: the
same optimiser, state layout and checkpoints, the same numbers to float32
rounding.  What changes is how the tables' step is computed.  jax.grad
would build each table's gradient as a table-sized array (a zero fill and a
scatter of the batch's rows) and optax would then make three passes over
every table.  Here every `nn.Embed` lookup in the loss is intercepted and
given a zero offset (the lookup's shape, (B, ..., dim)); the gradient with
respect to those offsets is the gradient of the rows the batch looked up.
Their ids, summed per distinct row, feed `jaxrec.kernels.row_adam`, which
makes the whole dense Adam step (every row's moments decay, every row
moves) in one pass per table.  The other parameters take optax's Adam.

Only models whose tables are read through `nn.Embed.__call__` alone may
use it (a table read any other way would lose that read's gradient), so
the models are listed in SUPPORTED.  The 'single' and 'pmap' launchers
run it (`make_step` in jaxrec.parallel), not 'mesh'.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxrec import kernels
from jaxrec.models import ncf
from jaxrec.models.mf import MF

SUPPORTED = (MF, ncf.GMF, ncf.MLP, ncf.NeuMF)


def _lookups(offsets, seen: list):
  """A method interceptor that records each nn.Embed lookup's (table key
  in the flattened params, ids) in `seen` and adds the lookup's offset to
  its rows (none while `offsets` is None)."""

  def intercept(next_fun, args, kwargs, context):
    if not (isinstance(context.module, nn.Embed)
            and context.method_name == "__call__"):
      return next_fun(*args, **kwargs)
    rows = next_fun(*args, **kwargs)
    seen.append((context.module.path + ("embedding",), args[0]))
    return rows if offsets is None else rows + offsets[len(seen) - 1]

  return intercept


def rows_and_slots(ids, row_grads, n_rows: int):
  """Sums the gradients of repeated ids.

  Args:
    ids: (n,) int table rows looked up; row_grads: (n, dim).
    n_rows: the table's row count.

  Returns:
    slot (n_rows,) int32, each row's index into g or -1 where untouched,
    and g (n, dim), the summed gradient of each distinct touched row.
  """
  n = ids.shape[0]
  slot = jnp.full((n_rows,), -1, jnp.int32).at[ids].set(
      jnp.arange(n, dtype=jnp.int32))
  g = jnp.zeros_like(row_grads).at[slot[ids]].add(row_grads)
  return slot, g


def _per_table(keys, lookups, ids, row_grads, tables):
  """(slots, grads) per table key: every lookup of a table, summed by row.
  `lookups` lists each lookup's table key; ids and row_grads are per
  lookup, (..., ) and (..., dim)."""
  slots, grads = [], []
  for key in keys:
    mine = [i for i, k in enumerate(lookups) if k == key]
    rows, dim = tables[key].shape
    slot, g = rows_and_slots(
        jnp.concatenate([ids[i].reshape(-1) for i in mine]),
        jnp.concatenate([row_grads[i].reshape(-1, dim) for i in mine]), rows)
    slots.append(slot)
    grads.append(g)
  return slots, grads


def make_train_step(model, loss_fn, lr: float, axis_name: str | None = None,
                    *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
  """`train_step(state, batch, key) -> (state, metrics)` for a state whose
  tx is `optax.adam(lr, b1, b2, eps)` (see the module docstring).

  Under `pmap` with `axis_name`, the step is that of the mean loss over
  devices, as step.make_train_step's: the dense gradients and metrics are
  averaged, and every device gathers every device's looked-up ids and row
  gradients (divided by the device count), so all replicas make the same
  table step.

  Raises ValueError for a model not in SUPPORTED, and at trace time for a
  state whose optimiser is not Adam.
  """
  if not isinstance(model, SUPPORTED):
    raise ValueError(
        f"row-sparse Adam supports {[c.__name__ for c in SUPPORTED]}, whose "
        f"tables are read by lookups only; not {type(model).__name__}")
  dense_tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)

  def gradients(loss, params):
    """(loss, aux, dense gradients, table keys, per-lookup table keys, ids
    and row gradients) of `loss(params)`, no table-sized gradient built."""
    seen = []
    with nn.intercept_methods(_lookups(None, seen)):
      jax.eval_shape(loss, params)                  # finds the lookups
    lookups = [key for key, _ in seen]
    keys = list(dict.fromkeys(lookups))
    flat = traverse_util.flatten_dict(params)
    tables = {k: flat[k] for k in keys}
    offsets = [jnp.zeros(ids.shape + tables[key].shape[1:])
               for key, ids in seen]

    def objective(dense, offsets):
      found = []
      params = traverse_util.unflatten_dict({**dense, **tables})
      with nn.intercept_methods(_lookups(offsets, found)):
        value, aux = loss(params)
      return value, (aux, [ids for _, ids in found])

    dense = {k: v for k, v in flat.items() if k not in tables}
    (value, (aux, ids)), (g_dense, g_rows) = jax.value_and_grad(
        objective, argnums=(0, 1), has_aux=True)(dense, offsets)
    return value, aux, g_dense, keys, lookups, ids, g_rows

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    adam, *rest = state.opt_state
    if not isinstance(adam, optax.ScaleByAdamState):
      raise ValueError("optim.tables='row_adam' needs the state of "
                       f"optax.adam, got {type(adam).__name__}")
    value, aux, g_dense, keys, lookups, ids, g_rows = gradients(
        lambda p: loss_fn(p, batch, key, state.apply_fn), state.params)
    metrics = {"loss": value, **aux}
    if axis_name is not None:
      g_dense, metrics = jax.lax.pmean((g_dense, metrics), axis_name)
      share = jax.lax.psum(1, axis_name)
      ids, g_rows = jax.lax.all_gather((ids, g_rows), axis_name)
      g_rows = [g / share for g in g_rows]

    # The dense parameters: optax's Adam on their share of the state.
    flat, mu, nu = (traverse_util.flatten_dict(t) for t in
                    (state.params, adam.mu, adam.nu))
    dense = {k: v for k, v in flat.items() if k not in keys}
    pick = lambda tree: {k: tree[k] for k in dense}
    updates, (new_adam, *new_rest) = dense_tx.update(
        g_dense, (optax.ScaleByAdamState(adam.count, pick(mu), pick(nu)),
                  *rest), dense)
    dense = optax.apply_updates(dense, updates)

    # The tables: one kernel pass each.
    slots, grads = _per_table(keys, lookups, ids, g_rows, flat)
    tables, t_mu, t_nu = kernels.row_adam(
        [flat[k] for k in keys], [mu[k] for k in keys], [nu[k] for k in keys],
        slots, grads, adam.count, lr, b1=b1, b2=b2, eps=eps)

    merge = lambda d, t: traverse_util.unflatten_dict({**d, **dict(zip(keys,
                                                                       t))})
    opt_state = (optax.ScaleByAdamState(new_adam.count,
                                        merge(new_adam.mu, t_mu),
                                        merge(new_adam.nu, t_nu)),
                 *new_rest)
    return state.replace(step=state.step + 1, params=merge(dense, tables),
                         opt_state=opt_state), metrics

  return train_step
