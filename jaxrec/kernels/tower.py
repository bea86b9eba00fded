"""A whole float32 ReLU tower in one CPU kernel call forward, one backward.

`tower(x, kernels, biases)` is a_L for a_i = relu(a_{i-1} W_i + b_i),
a_0 = x: the output of jaxrec.models.layers.Tower.  tower.cc computes it
with Intel MKL's sgemm, splitting the batch's rows between the cores once
for the whole forward pass and twice for the backward pass, where
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


def lax_tower(x: jax.Array, kernels: Sequence[jax.Array],
              biases: Sequence[jax.Array]) -> jax.Array:
  """The tower by lax: x (B, D_0), kernels (D_{i-1}, D_i), biases (D_i,)
  -> (B, D_L)."""
  for w, b in zip(kernels, biases):
    x = jax.nn.relu(lax.dot(x, w) + b[None, :])
  return x


def _forward(x, kernels, biases):
  """Every layer's output a_1 .. a_L, each (B, D_i)."""
  build.load("tower")
  shapes = [jax.ShapeDtypeStruct((x.shape[0], w.shape[1]), jnp.float32)
            for w in kernels]
  call = jax.ffi.ffi_call("jaxrec_tower_fwd", shapes,
                          vmap_method="sequential")
  params = [p for pair in zip(kernels, biases) for p in pair]
  return call(x, *params)


def _backward(x, kernels, biases, acts, g):
  """(dx, dW_1, db_1, ..., dW_L, db_L) for the output's cotangent g."""
  shapes = [jax.ShapeDtypeStruct(x.shape, jnp.float32)]
  for w, b in zip(kernels, biases):
    shapes += [jax.ShapeDtypeStruct(w.shape, jnp.float32),
               jax.ShapeDtypeStruct(b.shape, jnp.float32)]
  call = jax.ffi.ffi_call("jaxrec_tower_bwd", shapes,
                          vmap_method="sequential")
  params = [p for pair in zip(kernels, biases) for p in pair]
  return call(x, g, *params, *acts)


@jax.custom_vjp
def _tower(x, kernels, biases):
  return _forward(x, kernels, biases)[-1]


def _tower_fwd(x, kernels, biases):
  acts = _forward(x, kernels, biases)
  return acts[-1], (x, kernels, biases, acts)


def _tower_bwd(saved, g):
  x, kernels, biases, acts = saved
  dx, *grads = _backward(x, kernels, biases, acts, g)
  return dx, tuple(grads[0::2]), tuple(grads[1::2])


_tower.defvjp(_tower_fwd, _tower_bwd)


def runs(x: jax.Array, kernels: Sequence[jax.Array]) -> bool:
  """Whether `tower` takes x (B, D_0) through these kernels by the
  kernel: float32 on the CPU, MKL installed, at least MIN_FLOPS forward."""
  flops = sum(2 * x.shape[0] * w.shape[0] * w.shape[1] for w in kernels)
  return (bool(kernels) and jax.default_backend() == "cpu"
          and x.ndim == 2 and flops >= MIN_FLOPS and blas.available()
          and all(a.dtype == jnp.float32 for a in (x, *kernels)))


def tower(x: jax.Array, kernels: Sequence[jax.Array],
          biases: Sequence[jax.Array]) -> jax.Array:
  """relu(... relu(x W_1 + b_1) ... W_L + b_L), differentiable.

  Args:
    x: (B, D_0) float32.
    kernels: L arrays (D_{i-1}, D_i), float32.
    biases: L arrays (D_i,), float32.
  Returns:
    (B, D_L) float32: by the kernel where it `runs`, else by lax.
  """
  kernels, biases = tuple(kernels), tuple(biases)
  if runs(x, kernels):
    return _tower(x, kernels, biases)
  return lax_tower(x, kernels, biases)
