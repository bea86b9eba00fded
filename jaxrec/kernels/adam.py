"""Row-sparse exact Adam for embedding tables: a hand-written CPU kernel.

Dense Adam (PyTorch's `torch.optim.Adam`, optax's `adam`) moves every row
of an embedding table every step: rows the batch missed have a zero
gradient, but their moments still decay and their parameters still move.
`row_adam` makes that whole step in one pass over each table's parameter
and both moments, reading the gradient only where a batch touched a row,
so no table-sized gradient is ever built.  On the CPU it runs row_adam.cc
(jaxrec.kernels.build); elsewhere it runs the same formula in jax.numpy.

Per element, with g = 0 on untouched rows and t the step number (1, 2, ...):
  m <- (1 - b1) g + b1 m
  v <- (1 - b2) g^2 + b2 v
  p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
which is Adam with bias correction, written as PyTorch writes it; optax's
adam computes the same quantity in another order, so the two agree to
float32 rounding (tests/test_row_sparse.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec.kernels import build


def coefficients(count, lr, b1: float, b2: float):
  """(step, inv_sqrt_bc2) float32 for the step after `count` steps:
  -lr / (1 - b1^t) and 1 / sqrt(1 - b2^t), t = count + 1."""
  t = (count + 1).astype(jnp.float32)
  step = -jnp.asarray(lr, jnp.float32) / (1 - jnp.float32(b1) ** t)
  return step, jax.lax.rsqrt(1 - jnp.float32(b2) ** t)


def row_adam_jnp(p, m, v, slot, g, step, inv_sqrt_bc2, b1, b2, eps):
  """The kernel's formula for one table in jax.numpy (other backends, and
  the tests' reference).  p, m, v: (rows, dim); slot: (rows,) index into
  g (n, dim) or -1.  Returns (p, m, v)."""
  touched = (slot >= 0)[:, None]
  gr = jnp.where(touched, g[jnp.clip(slot, 0)], 0.0)
  m = (1 - b1) * gr + b1 * m
  v = (1 - b2) * gr * gr + b2 * v
  return p + step * m / (jnp.sqrt(v) * inv_sqrt_bc2 + eps), m, v


def rows_and_slots(ids, row_grads, n_rows: int):
  """Sums the gradients of repeated ids (what the CPU kernel does inside).

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


def row_adam(params, mus, nus, ids, grads, count, lr, *, b1=0.9,
             b2=0.999, eps=1e-8):
  """One exact dense Adam step on K embedding tables with row-sparse
  gradients.

  Args:
    params, mus, nus: K-lists of (rows_k, dim_k) float32: the tables and
      their first and second moments.  On the CPU they are updated in
      place: donate them (a jitted train step with its state donated does).
    ids: K-lists of (n_k,) int32: the rows the batch looked up, repeats
      allowed (a dense parameter: every row, 0 .. rows_k - 1).
    grads: K-lists of (n_k, dim_k) float32, each lookup's row gradient;
      the gradients of a repeated row are summed.
    count: int32 scalar, the steps taken before this one.
    lr: the learning rate (a float or a scalar array).

  Returns:
    (params, mus, nus) after the step, as K-lists.
  """
  if not params:
    return [], [], []
  step, inv = coefficients(count, lr, b1, b2)
  # The platform the step is traced for: jaxrec's launchers place the
  # state on jax's default backend.
  if jax.default_backend() != "cpu":
    out = [row_adam_jnp(p, m, v, *rows_and_slots(i, g, p.shape[0]), step,
                        inv, b1, b2, eps)
           for p, m, v, i, g in zip(params, mus, nus, ids, grads)]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]
  build.load("row_adam")
  args, shapes = [], []
  for p, m, v, i, g in zip(params, mus, nus, ids, grads):
    args += [p, m, v, i.astype(jnp.int32), g.astype(jnp.float32)]
    shapes += [jax.ShapeDtypeStruct(p.shape, jnp.float32)] * 3
  aliases = {1 + 5 * k + i: 3 * k + i for k in range(len(params))
             for i in range(3)}
  call = jax.ffi.ffi_call("jaxrec_row_adam", shapes,
                          input_output_aliases=aliases)
  out = call(jnp.stack([step, inv]), *args, b1=float(b1), b2=float(b2),
             eps=float(eps))
  return list(out[0::3]), list(out[1::3]), list(out[2::3])
