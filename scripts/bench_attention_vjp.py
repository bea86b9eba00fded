"""SASRec's attention with a hand-written VJP against production, raced in
bench_seq's SASRec training step.

  python scripts/bench_attention_vjp.py            # writes results/...
  python scripts/bench_attention_vjp.py --check    # exactness only

The contender's backward takes the softmax gradient from the saved weights,
so it skips the select that jnp.where's VJP applies to the logits'
cotangent.  It equals production wherever no query has every key hidden
(--check compares loss and gradients); on a fully hidden (padding) row it
differs unless that row's output gradient is zero.  A probe: main keeps
models/dropout.dot_product_attention.  Both contenders are compiled once
and take turns (seq_steps.race_step_variants), paired per round.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec.models import dropout  # noqa: E402


def make_core(rate, shape4, key):
  b, h, lq, lk = shape4

  def fwd_weights(q, k, mask):
    logits = jnp.einsum("nqd,nkd->nqk", q, k).reshape(shape4)
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    return jax.nn.softmax(logits)

  def drop(x):
    return x if key is None else dropout.apply(x, key, rate, shape4)

  @jax.custom_vjp
  def f(q, k, v, mask):
    w = drop(fwd_weights(q, k, mask)).reshape(b * h, lq, lk)
    return jnp.einsum("nqk,nkd->nqd", w, v)

  def f_fwd(q, k, v, mask):
    p = fwd_weights(q, k, mask)
    w = drop(p).reshape(b * h, lq, lk)
    return jnp.einsum("nqk,nkd->nqd", w, v), (q, k, v, p, mask)

  def f_bwd(res, g):
    q, k, v, p, mask = res
    w = drop(p).reshape(b * h, lq, lk)
    dv = jnp.einsum("nqk,nqd->nkd", w, g)
    dw = drop(jnp.einsum("nqd,nkd->nqk", g, v).reshape(shape4))
    dl = (p * (dw - jnp.sum(dw * p, axis=-1, keepdims=True))
          ).reshape(b * h, lq, lk)
    dq = jnp.einsum("nqk,nkd->nqd", dl, k)
    dk = jnp.einsum("nqk,nqd->nkd", dl, q)
    return dq, dk, dv, None

  f.defvjp(f_fwd, f_bwd)
  return f


def attention(query, key, value, bias=None, mask=None, broadcast_dropout=True,
              dropout_rng=None, dropout_rate=0.0, deterministic=False,
              dtype=None, precision=None, causal_block=0, row_block=0):
  assert bias is None and not broadcast_dropout and not row_block
  if causal_block and causal_block < query.shape[1]:
    outs = []
    for i, start in enumerate(range(0, query.shape[1], causal_block)):
      end = min(start + causal_block, query.shape[1])
      rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
      outs.append(attention(query[:, start:end], key[:, :end], value[:, :end],
                            None, dropout._block_of(mask, start, end), False, rng,
                            dropout_rate, deterministic))
    return jnp.concatenate(outs, axis=1)
  b, lq, h, dh = query.shape
  lk, dv = key.shape[1], value.shape[-1]

  def heads_first(x):
    return x.transpose(0, 2, 1, 3).reshape(b * h, x.shape[1], x.shape[3])

  use = not deterministic and dropout_rate > 0.0
  f = make_core(dropout_rate, (b, h, lq, lk), dropout_rng if use else None)
  out = f(heads_first(query / jnp.sqrt(dh).astype(query.dtype)),
          heads_first(key), heads_first(value), mask)
  return out.reshape(b, h, lq, dv).transpose(0, 2, 1, 3)


def main():
  seq_steps.attention_probe_main(
      "bench_attention_vjp", "custom_vjp", attention, 8,
      "the attention with a hand-written VJP (this script)",
      ("jaxrec.models.layers.dot_product_attention",
       "jaxrec.models.dropout.dot_product_attention"))


if __name__ == "__main__":
  main()
