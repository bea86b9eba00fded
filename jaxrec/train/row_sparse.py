"""A train step whose embedding tables take exact dense Adam (or SGD)
row-sparsely.

`make_train_step(model, loss_fn, lr)` returns a drop-in for
`step.make_train_step(loss_fn)` on a state built with `optax.adam(lr)`: the
same optimiser, state layout and checkpoints, the same numbers to float32
rounding. (With optimizer='sgd', the same for `optax.sgd(lr)`: a table's
rows the batch missed have a zero gradient and do not move, so a
scatter-add of the looked-up rows is its whole step.) What changes is how
the tables' step is computed. jax.grad would build each table's gradient as
a table-sized array (a zero fill and a scatter of the batch's rows) and
optax would then make three passes over every table. Here every `nn.Embed`
lookup in the loss is intercepted and given a zero offset (the lookup's
shape, (B, ..., dim)); the gradient with respect to those offsets is the
gradient of the rows the batch looked up. Their ids and gradients feed
`jaxrec.kernels.row_adam`, which sums repeated rows and makes the whole
dense Adam step (every row's moments decay, every row moves) in one pass
per table. The same kernel call steps the other parameters from their
whole gradients (every row touched), so one multi-threaded pass makes all
of Adam's step.
With SGD, the other parameters take optax.sgd.

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


def _as_rows(x):
  """x as a 2-D (rows, last axis) view for the kernel; a scalar is (1, 1)."""
  return x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)


def _all_rows(g):
  """(ids, g) of a dense parameter's gradient: every row, once."""
  g = _as_rows(g)
  return jnp.arange(g.shape[0], dtype=jnp.int32), g


def _concat(lookups, key, ids, row_grads, dim):
  """(n,) ids and (n, dim) row gradients of every lookup of table `key`."""
  mine = [i for i, k in enumerate(lookups) if k == key]
  return (jnp.concatenate([ids[i].reshape(-1) for i in mine]),
          jnp.concatenate([row_grads[i].reshape(-1, dim) for i in mine]))


def _row_gradients(loss, dense, tables, lookups):
  """Gradients of `loss(params)` without a table-sized gradient.

  Args:
    loss: params -> (mean loss, aux).
    dense, tables: the flattened parameters, tables apart.
    lookups: (table key, ids shape) of each nn.Embed lookup, in call order.

  Returns:
    (loss, aux, dense gradients, each lookup's ids, each lookup's row
    gradients (ids shape + (dim,))).
  """

  def objective(dense, offsets):
    found = []
    params = traverse_util.unflatten_dict({**dense, **tables})
    with nn.intercept_methods(_lookups(offsets, found)):
      value, aux = loss(params)
    return value, (aux, [ids for _, ids in found])

  offsets = [jnp.zeros(shape + tables[key].shape[1:])
             for key, shape in lookups]
  (value, (aux, ids)), (g_dense, g_rows) = jax.value_and_grad(
      objective, argnums=(0, 1), has_aux=True)(dense, offsets)
  return value, aux, g_dense, ids, g_rows


def make_train_step(model, loss_fn, lr: float, axis_name: str | None = None,
                    *, optimizer: str = "adam", b1: float = 0.9,
                    b2: float = 0.999, eps: float = 1e-8):
  """`train_step(state, batch, key) -> (state, metrics)` for a state whose
  tx is `optax.adam(lr, b1, b2, eps)` (optimizer 'adam') or `optax.sgd(lr)`
  ('sgd', no momentum: only the touched rows move, by a scatter-add).

  Under `pmap` with `axis_name`, the step is that of the mean loss over
  devices, as step.make_train_step's: the dense gradients and metrics are
  averaged, and every device gathers every device's looked-up ids and row
  gradients (divided by the device count), so all replicas make the same
  table step.

  Raises ValueError for a model not in SUPPORTED or an unknown optimizer,
  and at trace time for a state of another optimiser.
  """
  if not isinstance(model, SUPPORTED):
    raise ValueError(
        f"row-sparse steps support {[c.__name__ for c in SUPPORTED]}, whose "
        f"tables are read by lookups only; not {type(model).__name__}")
  if optimizer not in ("adam", "sgd"):
    raise ValueError(f"unknown optimizer {optimizer!r}; expected 'adam' or "
                     "'sgd'")

  def sgd(opt_state, flat, dense, g_dense, keys, rows):
    """Plain SGD: the dense step by optax, each table's by a scatter-add
    of its looked-up rows (rows: key -> (ids, row gradients))."""
    if jax.tree.leaves(opt_state):
      raise ValueError("optim.tables='row_sgd' needs the state of "
                       "optax.sgd without momentum")
    updates, opt_state = optax.sgd(lr).update(g_dense, opt_state, dense)
    tables = {k: flat[k].at[rows[k][0]].add(-lr * rows[k][1]) for k in keys}
    return {**optax.apply_updates(dense, updates), **tables}, opt_state

  def adam(opt_state, flat, dense, g_dense, keys, rows):
    """Adam, every parameter in one kernel call: each table from its
    looked-up rows, each dense parameter from its whole gradient (every
    row touched), as a (rows, last axis) view."""
    state, *rest = opt_state
    if not isinstance(state, optax.ScaleByAdamState):
      raise ValueError("optim.tables='row_adam' needs the state of "
                       f"optax.adam, got {type(state).__name__}")
    mu, nu = (traverse_util.flatten_dict(t) for t in (state.mu, state.nu))
    names = list(dense) + keys
    ids, grads = zip(*([_all_rows(g_dense[k]) for k in dense] +
                       [rows[k] for k in keys]))
    p, m, v = kernels.row_adam(
        *([_as_rows(tree[k]) for k in names] for tree in (flat, mu, nu)),
        list(ids), list(grads), state.count, lr, b1=b1, b2=b2, eps=eps)
    back = lambda xs: {k: x.reshape(flat[k].shape) for k, x in zip(names, xs)}
    tree = lambda xs: traverse_util.unflatten_dict(back(xs))
    return back(p), (optax.ScaleByAdamState(
        optax.safe_increment(state.count), tree(m), tree(v)), *rest)

  update = adam if optimizer == "adam" else sgd

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    loss = lambda params: loss_fn(params, batch, key, state.apply_fn)
    seen = []
    with nn.intercept_methods(_lookups(None, seen)):
      jax.eval_shape(loss, state.params)            # finds the lookups
    lookups = [k for k, _ in seen]
    keys = list(dict.fromkeys(lookups))
    flat = traverse_util.flatten_dict(state.params)
    dense = {k: v for k, v in flat.items() if k not in keys}
    value, aux, g_dense, ids, g_rows = _row_gradients(
        loss, dense, {k: flat[k] for k in keys},
        [(k, ids.shape) for k, ids in seen])
    metrics = {"loss": value, **aux}
    if axis_name is not None:
      g_dense, metrics = jax.lax.pmean((g_dense, metrics), axis_name)
      share = jax.lax.psum(1, axis_name)
      ids, g_rows = jax.lax.all_gather((ids, g_rows), axis_name)
      g_rows = [g / share for g in g_rows]
    rows = {k: _concat(lookups, k, ids, g_rows, flat[k].shape[1])
            for k in keys}
    params, opt_state = update(state.opt_state, flat, dense, g_dense, keys,
                               rows)
    return state.replace(step=state.step + 1,
                         params=traverse_util.unflatten_dict(params),
                         opt_state=opt_state), metrics

  return train_step
