"""A whole float32 ReLU tower in one CPU kernel call forward, one backward.

`tower(xs, kernels, biases)` is a_L for a_i = relu(a_{i-1} W_i + b_i),
a_0 = x = concatenate(xs, -1): the output of jaxrec.models.layers.Tower.
x comes as its blocks of columns (e.g. a user's and an item's embedding
rows), which the kernel never concatenates: it sums the blocks' products
with W_1's rows and returns each block's gradient apart.  tower.cc computes
it with Intel MKL's sgemm, splitting the batch's rows between the cores
once per pass (the backward pass then sums the cores' shares of dW), where
per-layer kernel calls (blas.py) wait for the cores after every product
and leave the bias, ReLU and mask to XLA between them.  It is
`model.matmul='blas_fused'`; MKL is the optional dependency of
jaxrec.kernels.build (`pip install -e '.[mkl]'`).  `lax_tower` is the
same function by lax, for other backends and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.kernels import blas, build

# Towers of fewer forward FLOPs stay on lax: at batch 256 on a 2-core Xeon,
# the kernel was slower than XLA for an 8-factor NCF tower (32-16-8 wide,
# 0.85 MFLOP) and level with it at 16 factors (3.4 MFLOP).
MIN_FLOPS = 1 << 23


def lax_tower(xs: Sequence[jax.Array], kernels: Sequence[jax.Array],
              biases: Sequence[jax.Array]) -> jax.Array:
  """The tower by lax: xs (B, D_0b) blocks of x, kernels (D_{i-1}, D_i),
  biases (D_i,) -> (B, D_L)."""
  x = jnp.concatenate(xs, axis=-1) if len(xs) > 1 else xs[0]
  for w, b in zip(kernels, biases):
    x = jax.nn.relu(lax.dot(x, w) + b[None, :])
  return x


def _params(kernels, biases):
  return [p for pair in zip(kernels, biases) for p in pair]


def _forward(xs, kernels, biases):
  """Every layer's output a_1 .. a_L, each (B, D_i)."""
  build.load("tower")
  shapes = [jax.ShapeDtypeStruct((xs[0].shape[0], w.shape[1]), jnp.float32)
            for w in kernels]
  call = jax.ffi.ffi_call("jaxrec_tower_fwd", shapes,
                          vmap_method="sequential")
  return call(*xs, *_params(kernels, biases), num_blocks=len(xs))


def _backward(xs, kernels, biases, acts, g):
  """(dx_1, ..., dx_B, dW_1, db_1, ..., dW_L, db_L) for the output's
  cotangent g."""
  shapes = [jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in xs]
  shapes += [jax.ShapeDtypeStruct(p.shape, jnp.float32)
             for p in _params(kernels, biases)]
  call = jax.ffi.ffi_call("jaxrec_tower_bwd", shapes,
                          vmap_method="sequential")
  return call(*xs, g, *_params(kernels, biases), *acts,
              num_blocks=len(xs))


@jax.custom_vjp
def _tower(xs, kernels, biases):
  return _forward(xs, kernels, biases)[-1]


def _tower_fwd(xs, kernels, biases):
  acts = _forward(xs, kernels, biases)
  return acts[-1], (xs, kernels, biases, acts)


def _tower_bwd(saved, g):
  xs, kernels, biases, acts = saved
  grads = _backward(xs, kernels, biases, acts, g)
  dxs, rest = tuple(grads[:len(xs)]), grads[len(xs):]
  return dxs, tuple(rest[0::2]), tuple(rest[1::2])


_tower.defvjp(_tower_fwd, _tower_bwd)


def runs(xs: Sequence[jax.Array], kernels: Sequence[jax.Array]) -> bool:
  """Whether `tower` takes xs through these kernels by the kernel: float32
  2-D blocks on the CPU, MKL installed, at least MIN_FLOPS forward."""
  rows = xs[0].shape[0] if xs else 0
  flops = sum(2 * rows * w.shape[0] * w.shape[1] for w in kernels)
  return (bool(kernels) and bool(xs) and jax.default_backend() == "cpu"
          and all(x.ndim == 2 and x.shape[0] == rows for x in xs)
          and flops >= MIN_FLOPS and blas.available()
          and all(a.dtype == jnp.float32 for a in (*xs, *kernels)))


def tower(xs: Sequence[jax.Array], kernels: Sequence[jax.Array],
          biases: Sequence[jax.Array]) -> jax.Array:
  """relu(... relu(x W_1 + b_1) ... W_L + b_L), differentiable, for
  x = concatenate(xs, -1).

  Args:
    xs: the blocks of x, each (B, D_0b) float32, their widths summing to
      D_0 (one block: x itself).
    kernels: L arrays (D_{i-1}, D_i), float32.
    biases: L arrays (D_i,), float32.
  Returns:
    (B, D_L) float32: by the kernel where it `runs`, else by lax.
  """
  xs, kernels, biases = tuple(xs), tuple(kernels), tuple(biases)
  if runs(xs, kernels):
    return _tower(xs, kernels, biases)
  return lax_tower(xs, kernels, biases)
