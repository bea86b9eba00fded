"""Float32 matrix products by Intel MKL's sgemm.

In the batch-256 NCF steps on a 2-core Xeon, MKL's sgemm, one
single-threaded call per core on its share of the rows (matmul.cc), made
the dense part of those steps 1.2-1.3x faster than XLA's own products
(results/bench_ncf_parts.md: blas_dense_speedup).  MKL is an optional
dependency, linked statically into the kernel (jaxrec.kernels.build:
`pip install -e '.[mkl]'`, x86-64 only), and used only on the CPU for
float32 products of at least MIN_FLOPS: other backends, dtypes and smaller
products run lax.dot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.kernels import build

# Products below this many FLOPs stay on lax.dot: a kernel call costs more
# than it saves there (MLP-3 at 8 factors, whose products are all under
# 1 MFLOP, ran slower through the kernel: results/bench_ncf.md at a4972aa).
MIN_FLOPS = 1 << 20


def available() -> bool:
  """Whether MKL's archives are installed (the BLAS kernel can be built)."""
  try:
    build.mkl_archives()
  except RuntimeError:
    return False
  return True


def matmul(a: jax.Array, b: jax.Array, *, transpose_a: bool = False,
           transpose_b: bool = False) -> jax.Array:
  """op(a) @ op(b) by the CPU kernel, op transposing where asked.

  Args:
    a: (m, k) float32, or (k, m) with transpose_a.
    b: (k, n) float32, or (n, k) with transpose_b.
  Returns:
    (m, n) float32.  Not differentiable: see `product`.
  """
  build.load("matmul")
  m = a.shape[1] if transpose_a else a.shape[0]
  n = b.shape[0] if transpose_b else b.shape[1]
  call = jax.ffi.ffi_call("jaxrec_matmul",
                          jax.ShapeDtypeStruct((m, n), jnp.float32),
                          vmap_method="sequential")
  return call(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@jax.custom_vjp
def product(x: jax.Array, w: jax.Array) -> jax.Array:
  """x @ w by the kernel, differentiable: x (m, k), w (k, n) -> (m, n)."""
  return matmul(x, w)


def _product_fwd(x, w):
  return matmul(x, w), (x, w)


def _product_bwd(saved, g):
  """dx = g w^T (m, k) and dw = x^T g (k, n), two more kernel calls."""
  x, w = saved
  return (matmul(g, w, transpose_b=True), matmul(x, g, transpose_a=True))


product.defvjp(_product_fwd, _product_bwd)


def runs(lhs, rhs) -> bool:
  """Whether `product` serves lhs (m, k) @ rhs (k, n): float32 on the CPU,
  at least MIN_FLOPS."""
  return (jax.default_backend() == "cpu" and lhs.dtype == jnp.float32
          and rhs.dtype == jnp.float32
          and 2 * lhs.shape[0] * lhs.shape[1] * rhs.shape[1] >= MIN_FLOPS)


def dot(lhs, rhs, precision=None, preferred_element_type=None):
  """lhs (m, k) @ rhs (k, n): `product` where it `runs`, else lax.dot."""
  if runs(lhs, rhs) and preferred_element_type in (None, jnp.float32):
    return product(lhs, rhs)
  return lax.dot(lhs, rhs, precision=precision,
                 preferred_element_type=preferred_element_type)
