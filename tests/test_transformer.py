"""The shared Transformer block and its attention masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.models import layers


def test_attention_mask_matches_brute_force():
  valid = np.array([[0, 1, 1, 1, 0, 1]], bool)
  segment = np.array([[0, 1, 1, 2, 0, 2]])
  for causal in (False, True):
    for seg in (None, segment):
      got = np.asarray(layers.attention_mask(
          jnp.asarray(valid), causal,
          None if seg is None else jnp.asarray(seg)))[0, 0]
      for i in range(6):
        for j in range(6):
          want = valid[0, j] and (not causal or j <= i) and (
              seg is None or seg[0, i] == seg[0, j])
          assert got[i, j] == want, (causal, seg is not None, i, j)


def _block(pre_ln, dim=8, heads=2, ff=16):
  block = layers.TransformerBlock(num_heads=heads, ff_dim=ff, dropout=0.1,
                                  pre_ln=pre_ln)
  x = jax.random.normal(jax.random.key(0), (2, 5, dim))
  mask = layers.attention_mask(jnp.ones((2, 5), bool), causal=False)
  params = block.init(jax.random.key(1), x, mask)
  return block, params, x, mask


def test_block_parameter_count():
  _, params, _, _ = _block(False)
  d, f = 8, 16
  want = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
  assert sum(p.size for p in jax.tree.leaves(params)) == want


@pytest.mark.parametrize("pre_ln", [False, True])
def test_block_layer_norm_placement(pre_ln):
  block, params, x, mask = _block(pre_ln)
  out = block.apply(params, x, mask)
  assert out.shape == x.shape
  # Post-LN ends in a layer norm (zero mean, unit variance per token with
  # the initial scale 1 and bias 0); pre-LN ends in a residual sum.
  mean = np.asarray(out.mean(-1))
  var = np.asarray(out.var(-1))
  normalised = np.allclose(mean, 0, atol=1e-5) and np.allclose(
      var, 1, atol=1e-3)
  assert normalised == (not pre_ln)


def test_dropout_only_in_training():
  block, params, x, mask = _block(False)
  a = block.apply(params, x, mask)
  assert np.array_equal(a, block.apply(params, x, mask))
  t1 = block.apply(params, x, mask, True, rngs={"dropout": jax.random.key(2)})
  t2 = block.apply(params, x, mask, True, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(t1, t2)


def test_masked_keys_have_no_influence():
  block, params, x, _ = _block(False)
  valid = jnp.array([[True, True, False, True, True]] * 2)
  mask = layers.attention_mask(valid, causal=True)
  grad = jax.grad(lambda v: block.apply(params, v, mask)[:, 3].sum())(x)
  grad = np.abs(np.asarray(grad)).sum(-1)
  assert (grad[:, 2] == 0).all() and (grad[:, 4] == 0).all()  # pad, future
  assert (grad[:, [0, 1, 3]] > 0).all()


def test_right_aligned_positions():
  assert layers.right_aligned_positions(3, 5).tolist() == [2, 3, 4]
  with pytest.raises(ValueError, match="exceeds max_len"):
    layers.right_aligned_positions(6, 5)
