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
