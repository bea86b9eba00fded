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


def _layer_norm(x, p, eps=1e-6):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def test_sasrec_code_block_matches_numpy_reference():
  """h = LN(x); x = h + Attn(q=h, k=v=x), no output projection; h = LN(x);
  out = h + FF(h): the block of SASRec's released code, written out."""
  heads, d, ff = 2, 8, 16
  block = layers.TransformerBlock(num_heads=heads, ff_dim=ff, dropout=0.3,
                                  pre_ln=True, sasrec_code=True)
  x = jax.random.normal(jax.random.key(0), (2, 5, d))
  valid = jnp.array([[False, True, True, True, True]] * 2)
  mask = layers.attention_mask(valid, causal=True)
  params = block.init(jax.random.key(1), x, mask)
  p = jax.tree.map(np.asarray, params["params"])
  xn, m = np.asarray(x, np.float64), np.asarray(mask)[:, 0]    # (B, L, L)
  dense = lambda v, name: v @ p[name]["kernel"] + p[name]["bias"]
  h = _layer_norm(xn, p["ln_attention"])
  q, k, v = dense(h, "query"), dense(xn, "key"), dense(xn, "value")
  attended = np.zeros_like(h)
  dh = d // heads
  for i in range(heads):
    cols = slice(i * dh, (i + 1) * dh)
    logits = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(dh)
    logits = np.where(m, logits, -1e30)  # a fully hidden row: uniform
    w = np.exp(logits - logits.max(-1, keepdims=True))
    attended[..., cols] = (w / w.sum(-1, keepdims=True)) @ v[..., cols]
  y = h + attended
  h = _layer_norm(y, p["ln_ffn"])
  want = h + dense(np.maximum(dense(h, "ffn_in"), 0), "ffn_out")
  np.testing.assert_allclose(block.apply(params, x, mask), want, atol=1e-4)
  # No output projection: 3 (D x D) projections instead of flax's 4.
  assert set(p) == {"query", "key", "value", "ln_attention", "ln_ffn",
                    "ffn_in", "ffn_out"}
  with pytest.raises(ValueError, match="needs pre_ln"):
    layers.TransformerBlock(num_heads=heads, ff_dim=ff, sasrec_code=True
                            ).init(jax.random.key(1), x, mask)


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


@pytest.mark.parametrize("rows,groups", [(7, 3), (8, 8), (3, 5), (1, 1)])
def test_row_groups_partition_the_rows(rows, groups):
  slices = layers.row_groups(rows, groups)
  covered = np.concatenate([np.arange(rows)[s] for s in slices])
  np.testing.assert_array_equal(covered, np.arange(rows))
  sizes = [s.stop - s.start for s in slices]
  assert len(slices) == min(rows, groups) and max(sizes) - min(sizes) <= 1


def test_row_groups_reject_fewer_than_one():
  with pytest.raises(ValueError, match="row_groups"):
    layers.row_groups(4, 0)


def test_in_row_groups_slices_batched_arrays_and_passes_the_rest():
  x = jnp.arange(10.0).reshape(5, 2)
  per_row = jnp.arange(5.0)[:, None]
  shared = jnp.array([[100.0, 200.0]])               # (1, 2): not sliced
  calls = []

  def fn(a, b, c):
    calls.append(a.shape[0])
    assert c.shape == (1, 2)
    return a * b + c

  out = layers.in_row_groups(fn, 2, x, per_row, shared)
  np.testing.assert_array_equal(out, x * per_row + shared)
  assert calls == [2, 3]


def test_row_groups_draw_their_own_dropout_masks():
  """The same row in two groups gets independent dropout masks: each call of
  a block inside one apply draws fresh keys. (Control: one row through two
  separate applies with one key gives the same output.)"""
  block, params, x, mask = _block(False)
  twin, twin_mask = x[jnp.array([0, 0])], mask[jnp.array([0, 0])]
  key = jax.random.key(4)
  bound = block.bind(params, rngs={"dropout": key})
  out = layers.in_row_groups(lambda h, m: bound(h, m, True), 2, twin,
                             twin_mask)
  assert not np.allclose(out[0], out[1])
  alone = lambda: block.apply(params, twin[:1], twin_mask[:1], True,
                              rngs={"dropout": key})
  np.testing.assert_array_equal(alone(), alone())
