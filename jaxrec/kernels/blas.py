"""Float32 matrix products by Intel MKL: sgemm, or bfloat16 products.

In the batch-256 NCF steps on a 2-core Xeon, MKL's sgemm, one
single-threaded call per core on its share of the rows (matmul.cc), made
the dense part of those steps 1.2-1.3x faster than XLA's own products
(results/bench_ncf_parts.md: blas_dense_speedup).  MKL is an optional
dependency, linked statically into the kernel (jaxrec.kernels.build:
`pip install -e '.[mkl]'`, x86-64 only), and used only on the CPU for
float32 products of at least MIN_FLOPS: other backends, dtypes and smaller
products run lax.dot.

`bf16=True` rounds both inputs to bfloat16 inside the kernel and takes
MKL's cblas_gemm_bf16bf16f32 (float32 accumulation, AMX tiles where the CPU
has them): float32 in and out, as PyTorch's autocast or oneDNN's bf16
fpmath mode compute a float32 layer, with no bfloat16 array in the graph.
"""

from __future__ import annotations

import functools

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
           transpose_b: bool = False, bf16: bool = False) -> jax.Array:
  """op(a) @ op(b) by the CPU kernel, op transposing where asked.

  Args:
    a: (m, k) float32, or (k, m) with transpose_a.
    b: (k, n) float32, or (n, k) with transpose_b.
    bf16: round a and b to bfloat16 (to nearest even; float32 subnormals
      become zero where the CPU converts with AVX512-BF16) and multiply
      those, accumulating in float32.
  Returns:
    (m, n) float32.  Not differentiable: see `product`.
  """
  build.load("matmul")
  m = a.shape[1] if transpose_a else a.shape[0]
  n = b.shape[0] if transpose_b else b.shape[1]
  call = jax.ffi.ffi_call("jaxrec_matmul",
                          jax.ShapeDtypeStruct((m, n), jnp.float32),
                          vmap_method="sequential")
  return call(a, b, transpose_a=transpose_a, transpose_b=transpose_b,
              bf16_products=bf16)


def lax_matmul(a: jax.Array, b: jax.Array, *, transpose_a: bool = False,
               transpose_b: bool = False, bf16: bool = False) -> jax.Array:
  """`matmul`'s product by lax.dot, on any backend and size."""
  a, b = (a.T if transpose_a else a), (b.T if transpose_b else b)
  if bf16:
    a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  return lax.dot(a, b, preferred_element_type=jnp.float32)


def _matmul(kernel: bool):
  """The kernel's `matmul`, or `lax_matmul` making the same products."""
  return matmul if kernel else lax_matmul


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _product(x, w, bf16, kernel):
  return _matmul(kernel)(x, w, bf16=bf16)


def _product_fwd(x, w, bf16, kernel):
  return _matmul(kernel)(x, w, bf16=bf16), (x, w)


def _product_bwd(bf16, kernel, saved, g):
  """dx = g w^T (m, k) and dw = x^T g (k, n), two more products of the
  same kind (both rounded to bfloat16 first with bf16)."""
  x, w = saved
  mm = _matmul(kernel)
  return (mm(g, w, transpose_b=True, bf16=bf16),
          mm(x, g, transpose_a=True, bf16=bf16))


_product.defvjp(_product_fwd, _product_bwd)


def product(x: jax.Array, w: jax.Array, bf16: bool = False) -> jax.Array:
  """x @ w by the kernel, differentiable: x (m, k), w (k, n) -> (m, n),
  float32.  With bf16 the backward pass's two products are bfloat16
  products too."""
  return _product(x, w, bf16, True)


def runs(lhs, rhs) -> bool:
  """Whether `product` serves lhs (m, k) @ rhs (k, n): float32 on the CPU,
  at least MIN_FLOPS."""
  return (jax.default_backend() == "cpu" and lhs.dtype == jnp.float32
          and rhs.dtype == jnp.float32
          and 2 * lhs.shape[0] * lhs.shape[1] * rhs.shape[1] >= MIN_FLOPS)


def dot(lhs, rhs, precision=None, preferred_element_type=None, bf16=False):
  """lhs (m, k) @ rhs (k, n): `product` where it `runs`, else lax.dot.

  With bf16, float32 products that the kernel does not take (too small,
  another backend) are the same bfloat16 products, forward and backward,
  made by lax.dot, so every product of the layer is rounded alike.
  """
  if runs(lhs, rhs) and preferred_element_type in (None, jnp.float32):
    return product(lhs, rhs, bf16)
  if bf16 and lhs.dtype == rhs.dtype == jnp.float32:
    return _product(lhs, rhs, True, False)    # the same products, by lax
  return lax.dot(lhs, rhs, precision=precision,
                 preferred_element_type=preferred_element_type)
