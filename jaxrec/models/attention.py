"""Scaled dot-product attention for the Transformer blocks, with a
hand-written gradient.

Forward: the logits Q K^T / sqrt(Dh) plus any bias, hidden keys set to the
float minimum, softmax, models/dropout.py's hashed dropout on every weight
(or one mask shared by rows and heads), then the weighted values: flax's
nn.dot_product_attention with that dropout.

Backward (jax.custom_vjp): the softmax's row term sum_k dW * W, which
autodiff reduces over each (Lq, Lk) array, is the same sum taken over the
head dimension, sum_d dO * O (the identity FlashAttention's backward pass
uses; Dao et al. 2022), so no reduction runs over the weights; the
logits' cotangent is formed in one pass from the saved weights and the
recomputed dropout mask; and the masking select's transpose is skipped,
since a hidden key's weight is exactly zero (a query that sees no key has
a constant output, so its row is zeroed instead). The gradients are
autodiff's to rounding
(tests/test_attention.py); scripts/bench_attention_vjp.py races the two in
SASRec's training step.

Legend: B = batch, H = heads, L = sequence length (q: queries, k: keys),
Dh = head width, N = B * H.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.models import dropout


def dot_product_attention(query, key, value, bias=None, mask=None,
                          broadcast_dropout: bool = True, dropout_rng=None,
                          dropout_rate: float = 0.0,
                          deterministic: bool = False, dtype=None,
                          precision=None, causal_block: int = 0,
                          row_block: int = 0,
                          hand_vjp: bool | None = None):
  """flax's nn.dot_product_attention with models/dropout.py's dropout on the
  attention weights and a hand-written gradient (the module docstring): an
  `attention_fn` for nn.MultiHeadDotProductAttention.

  query / key (B, Lq|Lk, H, Dh), value (B, Lk, H, Dv) -> (B, Lq, H, Dv); with
  `broadcast_dropout` (flax's default) one (Lq, Lk) mask serves every row and
  head, else each weight is dropped independently.  `mask` (B|1, 1|H, Lq,
  Lk) bool hides a key where False; `bias` is added to the logits.

  The products run as (B * H)-batched 3-d matmuls with heads moved next to
  the batch: XLA's CPU dot is several times slower on flax's 4-d
  '...qhd,...khd->...hqk' layout (scripts/bench_seq.py measures the step).

  `causal_block` > 0 promises that `mask` hides every key after its query
  (Lq == Lk): queries then go in blocks of that many rows, each against
  the keys up to its own last row only, so the hidden upper triangle is
  never computed (those weights are exactly zero either way). Block i's
  dropout mask is drawn from fold_in(dropout_rng, i). A query whose every
  key is hidden (a padding position, which the models zero) averages the
  keys its block sees rather than all of them.

  `row_block` > 0 sends the batch through in blocks of that many rows
  (lax.map; a last partial block goes alone), each recomputed in the
  backward pass (jax.checkpoint), so one block's (rows, H, Lq, Lk) logits,
  weights and dropout mask stay in cache instead of several (B, H, Lq, Lk)
  arrays making round trips through memory; the function is the same.
  Block i's dropout mask is drawn from fold_in(dropout_rng, i).

  `hand_vjp`: True, the hand-written gradient (the module docstring);
  False, the same forward pass left to autodiff; None (default), the
  hand-written one except in row blocks, where autodiff's ran faster in
  BERT4Rec's step (recomputed block by block, its weights stay in cache;
  results/bench_attention_vjp.md).
  Raises ValueError for a negative causal_block or row_block.
  """
  for name, size in (("causal_block", causal_block), ("row_block", row_block)):
    if size < 0:
      raise ValueError(f"{name} must be >= 0 (0 = off), got {size}")
  if row_block and row_block < query.shape[0]:
    return _in_row_blocks(
        row_block, dict(query=query, key=key, value=value, bias=bias,
                        mask=mask), dropout_rng,
        dict(broadcast_dropout=broadcast_dropout, dropout_rate=dropout_rate,
             deterministic=deterministic, dtype=dtype, precision=precision,
             causal_block=causal_block,
             hand_vjp=False if hand_vjp is None else hand_vjp))
  if causal_block and causal_block < query.shape[1]:
    if key.shape[1] != query.shape[1] or mask is None:
      raise ValueError("causal_block needs self-attention with a mask")
    outs = []
    for i, start in enumerate(range(0, query.shape[1], causal_block)):
      end = min(start + causal_block, query.shape[1])
      rng = None if dropout_rng is None else jax.random.fold_in(
          dropout_rng, i)
      outs.append(dot_product_attention(
          query[:, start:end], key[:, :end], value[:, :end],
          _block_of(bias, start, end), _block_of(mask, start, end),
          broadcast_dropout, rng, dropout_rate, deterministic, dtype,
          precision, hand_vjp=hand_vjp))
    return jnp.concatenate(outs, axis=1)
  b, lq, h, dh = query.shape
  lk = key.shape[1]

  def heads_first(x):                                   # (B * H, L, D)
    return x.transpose(0, 2, 1, 3).reshape(b * h, x.shape[1], x.shape[3])

  drop = not deterministic and dropout_rate > 0.0
  settings = _Settings(
      rate=dropout_rate if drop else 0.0, heads=h,
      drop_shape=(1, 1, lq, lk) if broadcast_dropout else (b, h, lq, lk),
      dtype=jnp.dtype(dtype or query.dtype), precision=precision)
  core = (lambda *a: _attend_fwd(*a)[0]) if hand_vjp is False else _attend
  out = core(heads_first(query / jnp.sqrt(dh).astype(query.dtype)),
             heads_first(key), heads_first(value), bias, mask,
             dropout_rng if drop else None, settings)
  return out.reshape(b, h, lq, -1).transpose(0, 2, 1, 3)


class _Settings(NamedTuple):
  """_attend's static arguments."""
  rate: float                       # dropout rate; 0 = no dropout
  heads: int                        # H
  drop_shape: tuple[int, ...]       # the dropout mask's shape
  dtype: jnp.dtype                  # of the weights times the values
  precision: object                 # of the four products


def _weights(q, k, bias, mask, s: _Settings):
  """Softmax weights (B, H, Lq, Lk) of q (N, Lq, Dh) against k (N, Lk, Dh),
  N = B * H, and whether each query sees some key: (B, H, Lq, 1) bool, or
  None without a mask."""
  n, lq, _ = q.shape
  logits = jnp.einsum("nqd,nkd->nqk", q, k, precision=s.precision).reshape(
      n // s.heads, s.heads, lq, k.shape[1])
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  top = jnp.max(logits, axis=-1, keepdims=True)
  e = jnp.exp(logits - top)
  weights = e / jnp.sum(e, axis=-1, keepdims=True)
  return weights, (None if mask is None else
                   top > jnp.finfo(logits.dtype).min)


def _dropped(weights, rng, s: _Settings):
  """The weights after dropout, cast to s.dtype."""
  if s.rate:
    weights = dropout.apply(weights, rng, s.rate, s.drop_shape)
  return weights.astype(s.dtype)


def _attend_fwd(q, k, v, bias, mask, rng, s: _Settings):
  weights, seen = _weights(q, k, bias, mask, s)
  n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
  out = jnp.einsum("nqk,nkd->nqd", _dropped(weights, rng, s).reshape(
      n, lq, lk), v, precision=s.precision)
  return out, (q, k, v, bias, weights, out, rng, seen)


def _attend_bwd(s: _Settings, residuals, g):
  """Cotangents of q, k, v and bias from the output's, g (N, Lq, Dv)."""
  q, k, v, bias, weights, out, rng, seen = residuals
  n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
  kept = _dropped(weights, rng, s)                       # (B, H, Lq, Lk)
  flat = lambda x: x.reshape(n, lq, lk)                  # (N, Lq, Lk)
  dv = jnp.einsum("nqk,nqd->nkd", flat(kept), g, precision=s.precision)
  dkept = jnp.einsum("nqd,nkd->nqk", g, v, precision=s.precision).reshape(
      weights.shape)
  # The softmax's row term sum_k dkept * kept is sum_d g * out: (B, H, Lq, 1).
  row = jnp.sum(g * out, axis=-1).reshape(weights.shape[:-1] + (1,))
  dlogits = kept * dkept - weights * row
  if seen is not None:                  # a query that sees no key: constant
    dlogits = jnp.where(seen, dlogits, jnp.zeros((), dlogits.dtype))
  dq = jnp.einsum("nqk,nkd->nqd", flat(dlogits), k, precision=s.precision)
  dk = jnp.einsum("nqk,nqd->nkd", flat(dlogits), q, precision=s.precision)
  dbias = None if bias is None else _sum_to(dlogits, bias.shape).astype(
      bias.dtype)
  return dq, dk, dv, dbias, None, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _attend(q, k, v, bias, mask, rng, s: _Settings):
  """(N, Lq, Dv): q (N, Lq, Dh) pre-scaled, k (N, Lk, Dh), v (N, Lk, Dv),
  with bias and mask broadcasting to (B, H, Lq, Lk) and dropout drawn from
  rng when s.rate > 0."""
  return _attend_fwd(q, k, v, bias, mask, rng, s)[0]


_attend.defvjp(_attend_fwd, _attend_bwd)


def _sum_to(x, shape):
  """x summed over the axes that `shape` broadcasts, then shaped `shape`."""
  x = x.sum(axis=tuple(range(x.ndim - len(shape))))
  axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
  return x.sum(axis=axes, keepdims=True).reshape(shape)


def _in_row_blocks(rows: int, arrays: dict, dropout_rng, options: dict):
  """dot_product_attention over `arrays` (query, key, value, bias, mask;
  bias and mask may have batch 1 or be None) in blocks of `rows` rows."""
  b = arrays["query"].shape[0]
  n = b // rows
  per_row = {k: x for k, x in arrays.items()
             if x is not None and x.shape[0] == b}
  shared = {k: x for k, x in arrays.items() if k not in per_row}

  def attend(i, part):
    rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
    return dot_product_attention(**part, **shared, dropout_rng=rng, **options)

  blocked = jax.checkpoint(lambda args: attend(*args))
  out = lax.map(blocked, (jnp.arange(n), {
      k: x[:n * rows].reshape((n, rows) + x.shape[1:])
      for k, x in per_row.items()}))
  out = out.reshape((n * rows,) + out.shape[2:])
  if n * rows == b:
    return out
  rest = blocked((n, {k: x[n * rows:] for k, x in per_row.items()}))
  return jnp.concatenate([out, rest], axis=0)


def _block_of(x, start: int, end: int):
  """Rows start:end and columns :end of a (..., Lq|1, Lk|1) bias or mask;
  a broadcast (size-1) axis stays whole."""
  if x is None:
    return None
  rows = slice(start, end) if x.shape[-2] > 1 else slice(None)
  cols = slice(None, end) if x.shape[-1] > 1 else slice(None)
  return x[..., rows, cols]
