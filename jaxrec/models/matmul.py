"""Dense layers whose matmul is one 2-D product.

A Dense layer on (B, L, D) inputs is lax.dot_general contracting D. Its
gradient with respect to the kernel then contracts the two leading axes,
(B, L, D) x (B, L, E) -> (D, E), and XLA's CPU backend runs that form
much slower than the same product of the flattened (B * L, D) and
(B * L, E) arrays: such weight gradients were the largest single ops of a
SASRec step (results/profile_sasrec_step.md). Flattening the leading axes
before the product gives autodiff the 2-D form; the result is the same up
to float rounding order. On a 2-core AVX-512 Xeon a Dense layer's forward
and gradient ran 1.57x (128 x 200 rows, 50 -> 50) and 2.34x (256 x 200
rows, 64 -> 256) as fast, and bench_seq's SASRec and BERT4Rec training
steps 1.12x and 1.10x (scripts/bench_seq_forms.py,
results/bench_seq_forms.md).

`blas_dot_general` runs the same 2-D product through Intel MKL's sgemm
(jaxrec.kernels.blas): the NCF towers' `matmul='blas'`.
`blas_bf16_dot_general` makes it a bfloat16 product with a float32
result (MKL's cblas_gemm_bf16bf16f32, AMX tiles where the CPU has them):
`matmul='blas_bf16'`, mixed precision with every array float32.
"""

from __future__ import annotations

import functools
import math

from jax import lax

from jaxrec.kernels import blas


def _dense_form(lhs, rhs, dimension_numbers):
  """(leading, inner, rest) shapes when this lax.dot_general is a Dense
  layer's (no batch axes, lhs's trailing k axes contracting with rhs's
  leading k axes in order), else None."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  k = len(lhs_contract)
  trailing = tuple(range(lhs.ndim - k, lhs.ndim))
  if (lhs_batch or rhs_batch or k == 0 or tuple(lhs_contract) != trailing
      or tuple(rhs_contract) != tuple(range(k))):
    return None
  return (lhs.shape[:lhs.ndim - k], math.prod(lhs.shape[lhs.ndim - k:]),
          rhs.shape[k:])


def _flat(dot, lhs, rhs, dimension_numbers, **kwargs):
  """`dot` of lhs as (prod(leading), inner) and rhs as (inner,
  prod(rest)), reshaped back to leading + rest, when this is a Dense
  layer's form; lax.dot_general otherwise."""
  form = _dense_form(lhs, rhs, dimension_numbers)
  if form is None:
    return lax.dot_general(lhs, rhs, dimension_numbers, **kwargs)
  leading, inner, rest = form
  out = dot(lhs.reshape(math.prod(leading), inner),
            rhs.reshape(inner, math.prod(rest)), **kwargs)
  return out.reshape(leading + rest)


def flat_dot_general(lhs, rhs, dimension_numbers, precision=None,
                     preferred_element_type=None):
  """lax.dot_general, run as one 2-D matmul when it is a Dense layer's.

  A Dense layer's form: no batch axes, lhs's trailing k axes contract with
  rhs's leading k axes in order, e.g. (B, L, D) x (D, E) or flax's
  attention projections (B, L, D) x (D, H, Dh) and (B, L, H, Dh) x
  (H, Dh, D). Then lhs becomes (prod(leading), K), rhs (K, prod(rest)),
  and the (prod(leading), prod(rest)) product is reshaped back to
  leading + rest, lax.dot_general's output shape. Any other form goes to
  lax.dot_general unchanged. Same signature as lax.dot_general, so it is
  the `dot_general` of nn.Dense / nn.DenseGeneral and the
  `qkv_dot_general` / `out_dot_general` of nn.MultiHeadDotProductAttention.
  """
  return _flat(lax.dot, lhs, rhs, dimension_numbers, precision=precision,
               preferred_element_type=preferred_element_type)


def blas_dot_general(lhs, rhs, dimension_numbers, precision=None,
                     preferred_element_type=None):
  """flat_dot_general with the 2-D product made by Intel MKL's sgemm
  (jaxrec.kernels.blas: float32 on the CPU; lax's dot elsewhere)."""
  return _flat(blas.dot, lhs, rhs, dimension_numbers, precision=precision,
               preferred_element_type=preferred_element_type)


def blas_bf16_dot_general(lhs, rhs, dimension_numbers, precision=None,
                          preferred_element_type=None):
  """blas_dot_general with bfloat16 products: float32 inputs rounded to
  bfloat16, accumulated and returned in float32 (jaxrec.kernels.blas)."""
  return _flat(functools.partial(blas.dot, bf16=True), lhs, rhs,
               dimension_numbers, precision=precision,
               preferred_element_type=preferred_element_type)


DOT_GENERALS = {"xla": None, "blas": blas_dot_general,
                "blas_bf16": blas_bf16_dot_general,
                # the layers of a 'blas_fused' Tower where its fused kernel
                # (jaxrec.kernels.tower) does not run
                "blas_fused": blas_dot_general}


def dense_dot_general(matmul: str):
  """The `dot_general` of nn.Dense for a model's `matmul` field: 'xla'
  (None: lax.dot_general, flax's default), 'blas' and 'blas_fused'
  (blas_dot_general) or 'blas_bf16' (blas_bf16_dot_general).

  Raises ValueError for another name.
  """
  try:
    return DOT_GENERALS[matmul]
  except KeyError:
    raise ValueError(f"unknown matmul {matmul!r}; expected one of "
                     f"{sorted(DOT_GENERALS)}") from None
