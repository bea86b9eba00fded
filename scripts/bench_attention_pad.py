"""SASRec's attention with each head's width padded to a multiple of 16,
raced against production in bench_seq's SASRec training step.

  python scripts/bench_attention_pad.py            # writes results/...
  python scripts/bench_attention_pad.py --check    # exactness only

bench_seq's SASRec has one head of width 50, which is not a whole number of
AVX-512 float32 vectors (16 lanes); alone, a (128, 200, 50) attention ran
faster at width 64 than at 50 on this CPU. The contender zero-pads query,
key and value to 64 columns before production's attention and slices the
output back; zero columns add nothing to Q K^T or to the weighted values,
so the function and its gradients are the same, and the query is
pre-scaled so production's 1 / sqrt(width) stays 1 / sqrt(50). A probe:
main keeps models/attention.dot_product_attention unpadded. Both contenders
are compiled once and take turns (seq_steps.race_step_variants), paired
per round.
"""

from __future__ import annotations

import os
import sys

import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec.models import attention  # noqa: E402

LANES = 16


def padded(query, key, value, bias=None, mask=None, broadcast_dropout=True,
           dropout_rng=None, dropout_rate=0.0, deterministic=False,
           dtype=None, precision=None, causal_block=0, row_block=0):
  """attention.dot_product_attention (same signature: flax passes only the
  keywords an attention_fn names) on (B, L, H, Dh) inputs whose last axis
  is zero-padded to a multiple of LANES; same result."""
  options = dict(bias=bias, mask=mask, broadcast_dropout=broadcast_dropout,
                 dropout_rng=dropout_rng, dropout_rate=dropout_rate,
                 deterministic=deterministic, dtype=dtype,
                 precision=precision, causal_block=causal_block,
                 row_block=row_block)
  dh, dv = query.shape[-1], value.shape[-1]
  widths = [-(-n // LANES) * LANES for n in (dh, dv)]
  if widths == [dh, dv]:
    return attention.dot_product_attention(query, key, value, **options)

  def pad(x, width):
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])])

  scale = jnp.sqrt(widths[0] / dh).astype(query.dtype)
  out = attention.dot_product_attention(
      pad(query * scale, widths[0]), pad(key, widths[0]),
      pad(value, widths[1]), **options)
  return out[..., :dv]


def main():
  seq_steps.attention_probe_main(
      "bench_attention_pad", "pad16", padded, 50,
      "each head's query, key and value zero-padded from 50 to 64 "
      "columns around it, the output sliced back (this script)")


if __name__ == "__main__":
  main()
