"""models/attention.py: flax's attention with hashed dropout, causal query
blocks, row blocks and a hand-written gradient, against flax and autodiff."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import attention, dropout


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
    ours = attention.dot_product_attention(q, k, value, bias=bias, mask=mask,
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

  ours = jax.grad(functools.partial(loss, attention.dot_product_attention),
                  argnums=(0, 1, 2))(q, k, v)
  ref = jax.grad(functools.partial(loss, nn.dot_product_attention),
                 argnums=(0, 1, 2))(q, k, v)
  for got, want in zip(ours, ref):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _autodiff_attention(q, k, v, bias, mask, rng, rate, broadcast):
  """The forward pass written out for jax's autodiff: (B, Lq, H, Dv)."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", q / np.sqrt(q.shape[-1]), k) + bias
  weights = jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(q.dtype).min))
  shape = (1, 1) + weights.shape[2:] if broadcast else weights.shape
  weights = dropout.apply(weights, rng, rate, shape)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


@pytest.mark.parametrize("heads,broadcast", [(1, False), (3, False),
                                             (2, True)])
def test_hand_written_gradient_equals_autodiff(heads, broadcast):
  """With dropout, a bias, padding keys and padding queries that see no
  key at all: outputs and the gradients of query, key, value and bias are
  autodiff's, at every position."""
  q, k, v = _qkv(seed=2, heads=heads, depth=5)
  valid = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]], bool)
  mask = _padded_causal_mask(valid).astype(bool) & valid[:, None, :, None]
  assert not np.asarray(mask).any(-1).all()          # some rows see nothing
  bias = jax.random.normal(jax.random.key(9), (2, heads, 6, 6))
  rng = jax.random.key(7)

  def ours(q, k, v, bias):
    return attention.dot_product_attention(
        q, k, v, bias=bias, mask=mask, dropout_rng=rng, dropout_rate=0.3,
        broadcast_dropout=broadcast)

  def ref(q, k, v, bias):
    return _autodiff_attention(q, k, v, bias, mask, rng, 0.3, broadcast)

  np.testing.assert_allclose(ours(q, k, v, bias), ref(q, k, v, bias),
                             rtol=1e-5, atol=1e-6)
  weights = jax.random.normal(jax.random.key(3), v.shape)
  grads = [jax.grad(lambda *a, f=f: jnp.sum(jnp.sin(f(*a)) * weights),
                    argnums=(0, 1, 2, 3))(q, k, v, bias) for f in (ours, ref)]
  for got, want in zip(*grads):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(grads[0][3])).sum() > 0.1


def test_hand_written_gradient_sums_a_broadcast_bias():
  """A bias shared over the batch and the queries (1, H, 1, Lk) gets the
  logits' gradient summed over those axes, as autodiff's."""
  q, k, v = _qkv(seed=4, heads=2, depth=3)
  bias = jax.random.normal(jax.random.key(1), (1, 2, 1, 6))
  mask = jnp.ones((1, 1, 6, 6), bool)

  def loss(fn, bias):
    return jnp.sum(jnp.sin(fn(q, k, v, bias=bias, mask=mask,
                              deterministic=True)))

  got = jax.grad(functools.partial(loss, attention.dot_product_attention))(
      bias)
  want = jax.grad(functools.partial(loss, nn.dot_product_attention))(bias)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("broadcast", [True, False])
def test_attention_dropout_drops_weights(broadcast):
  """With all-ones values, each output is the sum of its row's kept,
  rescaled attention weights; a broadcast mask is one (Lq, Lk) mask."""
  q, k, _ = _qkv(1)
  out = np.asarray(attention.dot_product_attention(
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
    return attention.dot_product_attention(
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
  ref = attention.dot_product_attention(q, k, v, bias=row_bias, mask=mask,
                                      deterministic=True)
  got = attention.dot_product_attention(q, k, v, bias=row_bias, mask=mask,
                                      deterministic=True, causal_block=block)
  np.testing.assert_allclose(got * seen, ref * seen, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="causal_block"):
    attention.dot_product_attention(q, k[:, :5], v[:, :5], causal_block=2)


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
    return attention.dot_product_attention(
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
    want = attention.dot_product_attention(
        q[part], k[part], v[part], bias=bias, mask=mask[part],
        dropout_rng=jax.random.fold_in(key, i), dropout_rate=0.5,
        broadcast_dropout=False, causal_block=causal_block)
    np.testing.assert_allclose(got[part], want, rtol=1e-6, atol=1e-6)
  assert not np.allclose(got * seen, attend(q, k, v, 0) * seen, atol=1e-3)


@pytest.mark.parametrize("option", ["causal_block", "row_block"])
def test_negative_block_sizes_rejected_by_name(option):
  q, k, v = _qkv(heads=1)
  with pytest.raises(ValueError, match=f"{option} must be >= 0.*got -2"):
    attention.dot_product_attention(q, k, v, deterministic=True,
                                  **{option: -2})
