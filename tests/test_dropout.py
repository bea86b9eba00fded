"""Dropout from hashed keep decisions: rates, independence, scaling,
shapes, attention."""

import functools

import flax.linen as nn
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


def _qkv(seed=0, heads=3, depth=4):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [jax.random.normal(k, (2, 6, heads, depth))   # (B, L, H, Dh)
          for k in keys]


@pytest.mark.parametrize("heads,depth", [(1, 4), (3, 4), (1, 16), (2, 50)])
def test_attention_without_dropout_equals_flax(heads, depth):
  """Causal and per-row padding masks and an additive bias, as flax, at
  head widths on and off a multiple of 16."""
  q, k, v = _qkv(heads=heads, depth=depth)
  valid = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], bool)
  mask = _padded_causal_mask(valid)
  bias = jax.random.normal(jax.random.key(9), (2, heads, 6, 6))
  wide_v = jnp.concatenate([v, 2 * v], axis=-1)      # values deeper than keys
  for value in (v, wide_v):
    ours = dropout.dot_product_attention(q, k, value, bias=bias, mask=mask,
                                         deterministic=True, dropout_rate=0.5)
    ref = nn.dot_product_attention(q, k, value, bias=bias, mask=mask,
                                   deterministic=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_attention_gradients_equal_flax():
  """Every input's gradient at SASRec's head width (50) is flax's."""
  q, k, v = _qkv(heads=1, depth=50)
  mask = _padded_causal_mask(jnp.ones((2, 6), bool))

  def loss(fn, *qkv):
    return jnp.sum(jnp.sin(fn(*qkv, mask=mask, deterministic=True)))

  ours = jax.grad(functools.partial(loss, dropout.dot_product_attention),
                  argnums=(0, 1, 2))(q, k, v)
  ref = jax.grad(functools.partial(loss, nn.dot_product_attention),
                 argnums=(0, 1, 2))(q, k, v)
  for got, want in zip(ours, ref):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("broadcast", [True, False])
def test_attention_dropout_drops_weights(broadcast):
  """With all-ones values, each output is the sum of its row's kept,
  rescaled attention weights; a broadcast mask is one (Lq, Lk) mask."""
  q, k, _ = _qkv(1)
  out = np.asarray(dropout.dot_product_attention(
      q, k, jnp.ones_like(k), dropout_rng=jax.random.key(0),
      dropout_rate=0.5, deterministic=False,
      broadcast_dropout=broadcast))[..., 0]                  # (B, Lq, H)
  weights = np.asarray(nn.dot_product_attention_weights(q, k))  # (B,H,Lq,Lk)
  shape = (1, 1, 6, 6) if broadcast else weights.shape
  keep = np.asarray(dropout.keep_mask(jax.random.key(0), 0.5, shape))
  expect = (weights * keep / 0.5).sum(-1).transpose(0, 2, 1)
  np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)
  assert np.std(out) > 0.05  # dropout did something


def _padded_causal_mask(valid):
  """(B, 1, L, L) bool: causal, and no query sees a padding key."""
  return nn.combine_masks(nn.make_causal_mask(valid),
                          nn.make_attention_mask(jnp.ones_like(valid), valid))


def _assert_same_outputs_and_grads(attend, size, mask, q, k, v):
  """attend(q, k, v, size) equals attend(q, k, v, 0), values and gradients,
  at the queries that see some key. Returns that (B, Lq, 1, 1) selector.

  Rows whose every key is hidden (padding queries, which the models zero)
  average whatever keys they see, so they are left out."""
  seen = np.asarray(mask).any(-1)[:, 0, :, None, None]
  np.testing.assert_allclose(attend(q, k, v, size) * seen,
                             attend(q, k, v, 0) * seen, rtol=1e-6, atol=1e-6)
  grad = lambda n: jax.jit(jax.grad(
      lambda *a: jnp.sum(jnp.sin(attend(*a, n)) * seen),
      argnums=(0, 1, 2)))(q, k, v)
  for got, want in zip(grad(size), grad(0)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  return seen


@pytest.mark.parametrize("block", [1, 4, 5])
def test_causal_blocks_equal_full_attention(block):
  """Query blocks against their keys so far: the same outputs and
  gradients as the full (L, L) product without dropout; with dropout,
  still no gradient from any later position."""
  q, k, v = _qkv(heads=3)
  valid = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], bool)
  mask = _padded_causal_mask(valid)
  bias = jax.random.normal(jax.random.key(9), (2, 3, 6, 6))

  def attend(q, k, v, causal_block, rate=0.0):
    return dropout.dot_product_attention(
        q, k, v, bias=bias, mask=mask, dropout_rng=jax.random.key(1),
        dropout_rate=rate, deterministic=rate == 0.0,
        broadcast_dropout=False, causal_block=causal_block)

  seen = _assert_same_outputs_and_grads(attend, block, mask, q, k, v)
  # With dropout: output row 2 takes nothing from keys/values after it.
  gk, gv = jax.jit(jax.grad(
      lambda k, v: attend(q, k, v, block, 0.5)[:, 2].sum(),
      argnums=(0, 1)))(k, v)
  assert (np.asarray(gk)[:, 3:] == 0).all()
  assert (np.asarray(gv)[:, 3:] == 0).all()
  assert np.abs(np.asarray(gv)[:, :3]).sum() > 0      # (some weights kept)
  # A bias broadcast over queries (B, H, 1, Lk) is cut by columns only.
  row_bias = bias[:, :, :1]
  ref = dropout.dot_product_attention(q, k, v, bias=row_bias, mask=mask,
                                      deterministic=True)
  got = dropout.dot_product_attention(q, k, v, bias=row_bias, mask=mask,
                                      deterministic=True, causal_block=block)
  np.testing.assert_allclose(got * seen, ref * seen, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="causal_block"):
    dropout.dot_product_attention(q, k[:, :5], v[:, :5], causal_block=2)


@pytest.mark.parametrize("rows,causal_block", [(2, 0), (3, 0), (2, 4)])
def test_row_blocks_equal_whole_batch_attention(rows, causal_block):
  """Blocks of rows (the last one partial when rows does not divide B),
  recomputed in the backward pass: the same outputs and gradients as the
  whole batch at once without dropout, for a per-row mask and a bias
  broadcast over the batch; with dropout, block i draws from
  fold_in(key, i)."""
  keys = jax.random.split(jax.random.key(4), 3)
  q, k, v = [jax.random.normal(key, (7, 6, 2, 4)) for key in keys]
  lengths = jnp.array([6, 5, 4, 3, 2, 6, 1])
  valid = jnp.arange(6)[None, :] >= 6 - lengths[:, None]    # (B, L)
  mask = _padded_causal_mask(valid)
  bias = jax.random.normal(jax.random.key(9), (1, 2, 6, 6))

  def attend(q, k, v, row_block, rate=0.0, key=jax.random.key(1)):
    return dropout.dot_product_attention(
        q, k, v, bias=bias, mask=mask, dropout_rng=key, dropout_rate=rate,
        deterministic=rate == 0.0, broadcast_dropout=False,
        causal_block=causal_block, row_block=row_block)

  seen = _assert_same_outputs_and_grads(attend, rows, mask, q, k, v)
  # With dropout: block i is the unblocked function on its rows with key
  # fold_in(key, i).
  key = jax.random.key(5)
  got = np.asarray(attend(q, k, v, rows, 0.5, key))
  for i, start in enumerate(range(0, 7, rows)):
    part = slice(start, start + rows)
    want = dropout.dot_product_attention(
        q[part], k[part], v[part], bias=bias, mask=mask[part],
        dropout_rng=jax.random.fold_in(key, i), dropout_rate=0.5,
        broadcast_dropout=False, causal_block=causal_block)
    np.testing.assert_allclose(got[part], want, rtol=1e-6, atol=1e-6)
  assert not np.allclose(got * seen, attend(q, k, v, 0) * seen, atol=1e-3)


@pytest.mark.parametrize("option", ["causal_block", "row_block"])
def test_negative_block_sizes_rejected_by_name(option):
  q, k, v = _qkv(heads=1)
  with pytest.raises(ValueError, match=f"{option} must be >= 0.*got -2"):
    dropout.dot_product_attention(q, k, v, deterministic=True,
                                  **{option: -2})
