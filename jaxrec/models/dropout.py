"""Dropout whose keep decisions come from a keyed integer hash.

jax.random.bernoulli (behind flax's nn.Dropout and its attention dropout)
runs ThreeFry-2x32 (20 rounds) per 32-bit word and writes the words to
memory before a separate pass compares them. Here an element's decision is
a pure function of its row-major index and two words of the caller's key:
two rounds of a 32-bit mixing bijection (the 'lowbias32' constants from
C. Wellons' hash-prospector) keyed by those words, compared with a 32-bit
threshold. That is a dozen integer operations per element, which XLA fuses
into the pass that applies the mask, so no random words travel through
memory. It is a statistical hash, not a cryptographic generator: fine for
dropout masks (tests/test_dropout.py checks rates, independence between
neighbours along every axis, and between keys), not for anything needing
unpredictability. The rate is realised to 2**-32 and kept values are
scaled by the exact keep probability, so E[output] = input. The caller's
key type is unchanged, so splitting and folding stay jax.random's.
scripts/bench_dropout.py measures the mask alone and the training steps
against the previous generator (XLA's RngBitGenerator, 16 bits per
element): results/bench_dropout.md.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_LEVELS = 1 << 32


def _threshold(rate: float) -> int:
  """Words below this are dropped: round(rate * 2**32), at most 2**32 - 1."""
  return min(round(rate * _LEVELS), _LEVELS - 1)


def keep_probability(rate: float) -> float:
  """The keep probability keep_mask realises for `rate`."""
  return 1.0 - _threshold(rate) / _LEVELS


def _mix(x: jax.Array) -> jax.Array:
  """A bijection of uint32 with strong avalanche (xorshift-multiply)."""
  x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """uint32 `shape`: each element's row-major position."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + (lax.broadcasted_iota(jnp.uint32, shape, axis)
                     * jnp.uint32(stride))
    stride *= shape[axis]
  return index


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]
              ) -> jax.Array:
  """Bool `shape`: True with probability keep_probability(rate), each
  element's decision hashed from its index and `key`."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
  shape = tuple(shape)
  if math.prod(shape) > _LEVELS:
    raise ValueError(f"dropout mask of shape {shape} has over 2**32 "
                     "elements; the hash counters are 32-bit")
  words = jax.random.bits(key, (2,), jnp.uint32)
  hashed = _mix(_mix(_flat_index(shape) ^ words[0]) + words[1])
  return hashed >= jnp.uint32(_threshold(rate))


def apply(x: jax.Array, key: jax.Array, rate: float,
          mask_shape: tuple[int, ...] | None = None) -> jax.Array:
  """x with elements zeroed at rate `rate` and the rest scaled up; a mask of
  `mask_shape` (default x.shape) broadcasts over x."""
  keep = keep_mask(key, rate, x.shape if mask_shape is None else mask_shape)
  return jnp.where(keep, x / jnp.asarray(keep_probability(rate), x.dtype),
                   jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """nn.Dropout's interface and behaviour, with keep_mask's masks.

  Attributes:
    rate: probability of zeroing an element.
    deterministic: default for __call__ (True = identity).
  """

  rate: float
  deterministic: bool | None = None

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None
               ) -> jax.Array:
    """(...) -> (...)."""
    deterministic = nn.merge_param("deterministic", self.deterministic,
                                   deterministic)
    if deterministic or self.rate == 0.0:
      return x
    return apply(x, self.make_rng("dropout"), self.rate)


def dot_product_attention(query, key, value, bias=None, mask=None,
                          broadcast_dropout: bool = True, dropout_rng=None,
                          dropout_rate: float = 0.0,
                          deterministic: bool = False, dtype=None,
                          precision=None, causal_block: int = 0,
                          row_block: int = 0):
  """flax's nn.dot_product_attention with this module's dropout on the
  attention weights: an `attention_fn` for nn.MultiHeadDotProductAttention.

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
             causal_block=causal_block))
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
          precision))
    return jnp.concatenate(outs, axis=1)
  b, lq, h, dh = query.shape
  lk, dv = key.shape[1], value.shape[-1]
  dtype = dtype or query.dtype

  def heads_first(x):                                   # (B * H, L, D)
    return x.transpose(0, 2, 1, 3).reshape(b * h, x.shape[1], x.shape[3])

  q = heads_first(query / jnp.sqrt(dh).astype(query.dtype))
  logits = jnp.einsum("nqd,nkd->nqk", q, heads_first(key),
                      precision=precision).reshape(b, h, lq, lk)
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits).astype(dtype)        # (B, H, Lq, Lk)
  if not deterministic and dropout_rate > 0.0:
    shape = ((1,) * (weights.ndim - 2) + weights.shape[-2:]
             if broadcast_dropout else weights.shape)
    weights = apply(weights, dropout_rng, dropout_rate, shape)
  out = jnp.einsum("nqk,nkd->nqd", weights.reshape(b * h, lq, lk),
                   heads_first(value), precision=precision)
  return out.reshape(b, h, lq, dv).transpose(0, 2, 1, 3)


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
