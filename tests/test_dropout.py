"""Dropout from hashed keep decisions: rates, independence, scaling,
shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import dropout


def _near(observed: float, p: float, n: int) -> bool:
  """observed is within 5 binomial standard errors of p over n trials."""
  return abs(observed - p) < 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_keep_rate_matches_within_binomial_noise(rate, impl):
  keep = np.asarray(dropout.keep_mask(jax.random.key(3, impl=impl), rate,
                                      (400, 1001)))
  p = dropout.keep_probability(rate)
  assert abs(p - (1 - rate)) < 1e-9
  assert _near(keep.mean(), p, keep.size)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_masks_are_independent_along_every_axis_and_between_keys(rate):
  key = jax.random.key(0)
  shape = (40, 30, 200)
  keep = np.asarray(dropout.keep_mask(key, rate, shape))
  p = dropout.keep_probability(rate)
  for axis in range(3):  # neighbours along each axis (strides 6000, 200, 1)
    a = np.moveaxis(keep, axis, 0)
    assert _near((a[1:] & a[:-1]).mean(), p * p, a[1:].size), axis
  flat = keep.reshape(-1)
  for lag in (2, 7, 64, 4096):
    assert _near((flat[lag:] & flat[:-lag]).mean(), p * p, flat.size - lag)
  # Keys folded from one parent (causal and row blocks): independent masks.
  for other in (jax.random.fold_in(key, 1), jax.random.key(1)):
    b = np.asarray(dropout.keep_mask(other, rate, shape))
    assert _near((keep & b).mean(), p * p, keep.size)


def test_hash_bits_are_balanced_and_uncorrelated_between_neighbours():
  words = jnp.arange(1 << 18, dtype=jnp.uint32)
  hashed = np.asarray(dropout._mix(dropout._mix(words ^ 12345) + 678))
  bits = (hashed[:, None] >> np.arange(32, dtype=np.uint32)) & 1
  n = bits.shape[0]
  assert all(_near(f, 0.5, n) for f in bits.mean(axis=0))
  same = (bits[1:] == bits[:-1]).mean(axis=0)  # bit j of word i and i + 1
  assert all(_near(f, 0.5, n - 1) for f in same)


def test_apply_preserves_the_mean_and_zeroes_the_rest():
  x = jnp.full((300, 500), 2.0)
  y = np.asarray(dropout.apply(x, jax.random.key(1), 0.3))
  kept = y != 0
  np.testing.assert_allclose(y[kept], 2.0 / dropout.keep_probability(0.3),
                             rtol=1e-6)
  assert abs(y.mean() - 2.0) < 0.02


def test_broadcast_mask_is_shared_over_leading_axes():
  x = jnp.ones((4, 3, 7, 9))
  y = np.asarray(dropout.apply(x, jax.random.key(2), 0.5, (1, 1, 7, 9)))
  assert (y == y[:1, :1]).all()
  assert 0 < (y == 0).mean() < 1


def test_module_is_identity_when_deterministic_or_rate_zero():
  x = jnp.arange(12.0).reshape(3, 4)
  for rate, det in ((0.5, True), (0.0, False)):
    y = dropout.Dropout(rate).apply({}, x, deterministic=det,
                                     rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(y, x)


def test_same_key_same_mask_and_bad_rate_rejected():
  a = dropout.keep_mask(jax.random.key(5), 0.2, (64, 50))
  b = dropout.keep_mask(jax.random.key(5), 0.2, (64, 50))
  c = dropout.keep_mask(jax.random.key(6), 0.2, (64, 50))
  np.testing.assert_array_equal(a, b)
  assert (np.asarray(a) != np.asarray(c)).any()
  with pytest.raises(ValueError, match="rate"):
    dropout.keep_mask(jax.random.key(0), 1.0, (3,))
  with pytest.raises(ValueError, match="2\\*\\*32"):
    dropout.keep_mask(jax.random.key(0), 0.1, (1 << 16, 1 << 16, 2))
