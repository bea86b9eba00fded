"""jaxrec's hand-written CPU kernels (XLA FFI handlers built on first use).

  row_adam: exact dense Adam for embedding tables whose gradient touches
    few rows, in one pass per table (adam.py, row_adam.cc).
  matmul / product: float32 products by Intel MKL's sgemm, or bfloat16
    products of float32 arrays (AMX where the CPU has it), shared out over
    the cores (blas.py, matmul.cc); the `blas` and `blas_bf16` Dense
    layers of jaxrec.models.matmul run on it.
  tower: a whole float32 ReLU tower, forward and backward, one MKL kernel
    call each (tower.py, tower.cc): Tower(matmul='blas_fused').
"""

from jaxrec.kernels.adam import (coefficients, row_adam, row_adam_jnp,
                                 rows_and_slots)
from jaxrec.kernels.blas import matmul, product
from jaxrec.kernels.build import library_path, load

__all__ = ["coefficients", "library_path", "load", "matmul", "product",
           "row_adam", "row_adam_jnp", "rows_and_slots"]
