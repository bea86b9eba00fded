"""Blocks shared by model families.

Legend: B = batch, N = candidates, D = width, L = sequence length,
H = attention heads.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.kernels import tower
from jaxrec.models import matmul
from jaxrec.models.attention import dot_product_attention
from jaxrec.models.dropout import Dropout


def initializer(name: str, what: str = "initialiser"):
  """The jax.nn.initializers factory `name` called with its defaults, e.g.
  'lecun_normal' (Flax's Dense default), 'glorot_uniform' (Keras's) or
  'normal' (N(0, 0.01^2)); `what` names the setting in the error."""
  factory = getattr(jax.nn.initializers, name, None)
  if not callable(factory):
    raise ValueError(f"{what} {name!r} is not a jax.nn.initializers factory "
                     "(e.g. 'lecun_normal', 'glorot_uniform', 'normal')")
  return factory()


class Tower(nn.Module):
  """A ReLU MLP: Dense -> ReLU for every width in `widths`.

  Attributes:
    widths: hidden widths, e.g. (32, 16, 8); () is the identity.
    dropout: rate after each hidden layer (0 = none).
    matmul: what makes the layers' products: 'xla' (lax.dot_general),
      'blas' (Intel MKL's sgemm, jaxrec.models.matmul.blas_dot_general),
      'blas_bf16' (MKL's bfloat16 products of the float32 layers, float32
      accumulation: blas_bf16_dot_general) or 'blas_fused' (the whole
      tower's forward and backward passes, one MKL kernel call each:
      jaxrec.kernels.tower; the 'blas' layers where it does not run, e.g.
      with dropout in training or for `first_layer_grid`).
    kernel_init: the name of a jax.nn.initializers factory for the
      kernels: 'lecun_normal' (Flax's default) or e.g. 'glorot_uniform'
      (Keras's default, which the NCF authors' code used).
    dtype: the layers' computation dtype, e.g. 'bfloat16' (mixed
      precision: inputs and kernels cast to it, parameters and their
      gradients stay float32); None keeps the inputs' dtype.
  """

  widths: Sequence[int]
  dropout: float = 0.0
  matmul: str = "xla"
  kernel_init: str = "lecun_normal"
  dtype: str | None = None

  def setup(self):
    if self.dtype not in (None, "float32") and self.matmul != "xla":
      raise ValueError(f"Tower dtype {self.dtype!r} needs matmul='xla' "
                       f"(matmul={self.matmul!r} takes float32 layers)")
    dot = matmul.dense_dot_general(self.matmul)
    init = initializer(self.kernel_init, "Tower kernel_init")
    self.dense = [nn.Dense(w, dot_general=dot, kernel_init=init,
                           dtype=self.dtype)
                  for w in self.widths]                # dense_0, dense_1, ...
    self.drop = Dropout(self.dropout)

  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """(..., D_in) -> (..., widths[-1])."""
    return self.concatenated([x], train)

  def concatenated(self, xs: Sequence[jnp.ndarray], train: bool = False
                   ) -> jnp.ndarray:
    """The tower of jnp.concatenate(xs, -1), xs each (..., D_b): with
    matmul='blas_fused' the kernel takes the blocks as they are and never
    builds the concatenation (nor splits its gradient)."""
    if (self.widths and self.matmul == "blas_fused"
        and not self.is_initializing() and not (self.dropout and train)):
      return self._fused(xs)
    x = xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)
    return self.after_first(self.dense[0](x), train) if self.widths else x

  def _fused(self, xs: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """The tower by jaxrec.kernels.tower on xs flattened to (B, D_b)."""
    layers = [d.variables["params"] for d in self.dense]
    lead = xs[0].shape[:-1]
    out = tower.tower([x.reshape(-1, x.shape[-1]) for x in xs],
                      [p["kernel"] for p in layers],
                      [p["bias"] for p in layers])
    return out.reshape(lead + out.shape[-1:])

  def after_first(self, h: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """The rest of the tower from the first layer's pre-activation h."""
    for layer in list(self.dense[1:]) + [None]:
      h = nn.relu(h)
      if self.dropout:
        h = self.drop(h, deterministic=not train)
      if layer is not None:
        h = layer(h)
    return h

  def first_layer_grid(self, left: jnp.ndarray, right: jnp.ndarray
                       ) -> jnp.ndarray:
    """First-layer pre-activations of every pair [left_b, right_n].

    The first layer is linear in the concatenation, W [l; r] + c =
    (W_l l + c) + W_r r, so the (B, N) grid costs B + N projections instead
    of B * N: the saving that makes full ranking of tower models cheap.

    Args:
      left: (B, D_l); right: (N, D_r).
    Returns:
      (B, N, widths[0]).
    """
    zeros = lambda n, d: jnp.zeros((n, d), left.dtype)
    first = self.dense[0]
    a = first(jnp.concatenate([left, zeros(left.shape[0], right.shape[1])],
                              axis=-1))                      # W_l l + c
    c = first(jnp.concatenate([zeros(right.shape[0], left.shape[1]), right],
                              axis=-1))                      # W_r r + c
    bias = first(zeros(1, left.shape[1] + right.shape[1]))   # c
    return a[:, None, :] + (c - bias)[None, :, :]


def row_sum_sq(x: jnp.ndarray) -> jnp.ndarray:
  """(B,) sum of squares over all but the leading axis of x (B, ...): the
  per-example L2 of looked-up embedding rows."""
  return jnp.sum((x ** 2).reshape(x.shape[0], -1), -1)


def pair_grid(users: jnp.ndarray, candidates: jnp.ndarray):
  """Broadcasts ids to pairs: users (B,) and candidates (N,) or (B, N)
  -> two (B, N) id arrays."""
  if candidates.ndim == 1:
    candidates = jnp.broadcast_to(candidates[None, :],
                                  (users.shape[0], candidates.shape[0]))
  return jnp.broadcast_to(users[:, None], candidates.shape), candidates


def attention_mask(valid: jnp.ndarray, causal: bool,
                   segment: jnp.ndarray | None = None) -> jnp.ndarray:
  """(B, 1, L, L) bool: query i may attend to key j.

  Keys at padding positions are always hidden; with `causal`, so are keys
  after the query (j > i); with `segment` (B, L) ids (packed rows), so are
  keys of another segment. `valid` is (B, L) bool, False at padding.
  """
  mask = nn.make_attention_mask(jnp.ones_like(valid), valid)
  if causal:
    mask = nn.combine_masks(mask, nn.make_causal_mask(valid))
  if segment is not None:
    mask = nn.combine_masks(
        mask, nn.make_attention_mask(segment, segment, jnp.equal))
  return mask.astype(bool)


class TransformerBlock(nn.Module):
  """Multi-head self-attention and a position-wise feed-forward network,
  each with dropout, a residual connection and layer norm.

  Post-LN (Vaswani et al. 2017; BERT4Rec): x = LN(x + Drop(F(x))).
  Pre-LN (`pre_ln=True`; the residual form of SASRec's Eq. 4,
  g(x) = x + Drop(g(LN(x)))): x = x + Drop(F(LN(x))).
  SASRec's released code (`sasrec_code=True`, with pre-LN): the residual
  adds the normalised input, h = LN(x), x = h + Attn(q=h, k=v=x), then
  h = LN(x), x = h + Drop(FF(h)); the attention has no output projection
  (the paper's Eq. 2) and no dropout on its output, only on its weights.

  Attributes:
    num_heads: H; D must be divisible by H.
    ff_dim: inner width of the feed-forward network.
    dropout: rate on both residual branches and on every attention weight,
      each drawn independently as in the SASRec and BERT code (flax's
      default would share one (L, L) mask across rows and heads).
    pre_ln: normalise before each sublayer instead of after the residual.
    sasrec_code: the layout of SASRec's released code (needs pre_ln).
    activation: 'relu' (SASRec) or 'gelu' (BERT4Rec) in the feed-forward.
    ln_epsilon: layer-norm epsilon.
    causal_block: > 0 when the mask is causal: attention in query blocks of
      this many rows that skip the hidden upper triangle (exact;
      `attention.dot_product_attention`).
    row_block: > 0: attention over the batch in blocks of this many rows,
      each recomputed in the backward pass, so a block's (rows, H, L, L)
      arrays stay in cache (same function; `attention.dot_product_attention`).
  """

  num_heads: int
  ff_dim: int
  dropout: float = 0.0
  pre_ln: bool = False
  sasrec_code: bool = False
  activation: str = "relu"
  ln_epsilon: float = 1e-6
  kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
  causal_block: int = 0
  row_block: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray,
               train: bool = False) -> jnp.ndarray:
    """(B, L, D) -> (B, L, D); `mask` (B, 1, L, L) from `attention_mask`."""
    act = {"relu": nn.relu, "gelu": nn.gelu}[self.activation]
    drop = Dropout(self.dropout, deterministic=not train)
    if self.sasrec_code:
      return self._sasrec_code(x, mask, train, act, drop)
    attention = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout,
        attention_fn=functools.partial(dot_product_attention,
                                       causal_block=self.causal_block,
                                       row_block=self.row_block),
        broadcast_dropout=False,
        deterministic=not train, kernel_init=self.kernel_init,
        qkv_dot_general=matmul.flat_dot_general,
        out_dot_general=matmul.flat_dot_general, name="attention")
    ffn_in = self._dense(self.ff_dim, "ffn_in")
    ffn_out = self._dense(x.shape[-1], "ffn_out")
    ln_attention = nn.LayerNorm(self.ln_epsilon, name="ln_attention")
    ln_ffn = nn.LayerNorm(self.ln_epsilon, name="ln_ffn")

    def attend(h):
      return attention(h, h, mask=mask)

    def feed_forward(h):
      return ffn_out(drop(act(ffn_in(h))))

    if self.pre_ln:
      x = x + drop(attend(ln_attention(x)))
      return x + drop(feed_forward(ln_ffn(x)))
    x = ln_attention(x + drop(attend(x)))
    return ln_ffn(x + drop(feed_forward(x)))

  def _dense(self, width: int, name: str) -> nn.Dense:
    """A Dense layer whose matmul is one 2-D product (`matmul`)."""
    return nn.Dense(width, kernel_init=self.kernel_init, name=name,
                    dot_general=matmul.flat_dot_general)

  def _sasrec_code(self, x, mask, train, act, drop):
    """SASRec's released-code block (see the class docstring)."""
    if not self.pre_ln:
      raise ValueError("sasrec_code=True needs pre_ln=True")
    b, l, d = x.shape
    h = self.num_heads
    dense = lambda name: self._dense(d, name)
    split = lambda t: t.reshape(b, l, h, d // h)             # (B, L, H, Dh)
    normed = nn.LayerNorm(self.ln_epsilon, name="ln_attention")(x)
    rng = None if not train or not self.dropout else self.make_rng("dropout")
    attended = dot_product_attention(
        split(dense("query")(normed)), split(dense("key")(x)),
        split(dense("value")(x)), mask=mask, broadcast_dropout=False,
        dropout_rng=rng, dropout_rate=self.dropout,
        deterministic=not train, causal_block=self.causal_block,
        row_block=self.row_block)
    x = normed + attended.reshape(b, l, d)
    normed = nn.LayerNorm(self.ln_epsilon, name="ln_ffn")(x)
    ffn_in = self._dense(self.ff_dim, "ffn_in")
    ffn_out = self._dense(d, "ffn_out")
    return normed + drop(ffn_out(drop(act(ffn_in(normed)))))


def row_groups(rows: int, groups: int) -> list[slice]:
  """`groups` contiguous slices covering range(rows), sizes differing by
  at most one (fewer when rows < groups)."""
  if groups < 1:
    raise ValueError(f"row_groups must be >= 1, got {groups}")
  bounds = [rows * g // groups for g in range(groups + 1)]
  return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def in_row_groups(fn, groups: int, x: jnp.ndarray, *others: jnp.ndarray
                  ) -> jnp.ndarray:
  """fn(x, *others) computed on `groups` independent groups of rows and
  concatenated: the same function when fn treats rows independently.

  x (B, ...) and every array of `others` with B rows are sliced alike
  (`row_groups`); the rest pass whole. The groups are unrolled, so their
  ops are independent and XLA's CPU runtime runs two groups' ops at once
  on two cores: SASRec's step at batch 128 ran 1.11x faster in 8 groups
  (results/bench_seq_ablation.md; results/profile_sasrec_step.md shows
  the busier threads).
  """
  b = x.shape[0]
  outs = [fn(x[rows], *(o[rows] if o.shape[0] == b else o for o in others))
          for rows in row_groups(b, groups)]
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


def right_aligned_positions(width: int, max_len: int) -> jax.Array:
  """(width,) position ids of a left-padded window of `width` columns whose
  last column is position max_len - 1: the same ids as the last `width`
  columns of a `max_len` window, so extra left padding changes nothing."""
  if width > max_len:
    raise ValueError(f"input width {width} exceeds max_len {max_len}")
  return jnp.arange(max_len - width, max_len)
