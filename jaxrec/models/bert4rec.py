"""BERT4Rec: bidirectional Transformer trained by masked-item prediction.

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019.
Items of the sequence are replaced by a [mask] token with probability rho
and predicted from both sides by a softmax over all items; at test time a
[mask] is appended after the history and its prediction ranks the items.

Legend: B = batch, L = input width (<= max_len), D = dim, N = candidates,
M = masked positions in a batch.

As in the paper and its code: learned positions, embedding layer norm and
dropout, post-LN blocks with a GELU feed-forward of width 4D, an output
transform (dense, GELU, layer norm) followed by a dot product with the
shared item embeddings plus a per-item bias, truncated-normal(0.02) init.
Deviation: positions are right-aligned (`layers.right_aligned_positions`),
so extra left padding changes nothing.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models import layers, matmul
from jaxrec.models.dropout import Dropout


class BERT4Rec(nn.Module):
  """Bidirectional Transformer; id 0 is padding, id n_items + 1 is [mask].

  Attributes:
    n_items: real items are 1..n_items.
    max_len: number of learned positions (the longest input).
    dim: D.
    num_blocks: Transformer blocks.
    num_heads: attention heads.
    dropout: rate on embeddings, attention and residual branches.
    row_block: attention over the batch in blocks of this many rows, each
      recomputed in the backward pass (0 = the whole batch at once; same
      function: `layers.TransformerBlock`), meant for where one
      (B, H, L, L) array outgrows the cache. scripts/bench_seq.py (L = 200,
      batch 256, 82 MB per array) sets 8, but a same-run ablation
      (results/bench_seq_ablation.md) put 0, 4 and 16 within noise of it
      (paired medians 0.97x, 1.05x, 0.99x); the configs keep 0.
    row_groups: the blocks run on this many independent groups of rows,
      unrolled (`layers.in_row_groups`; the same function, each group
      drawing its own dropout masks), as for SASRec. At bench_seq's
      shapes 4 groups with row_block 8 ran 1.03x the speed of 1, and 8
      groups without row blocks 0.99x (results/bench_seq_ablation.md).
  """

  n_items: int
  max_len: int = 50
  dim: int = 64
  num_blocks: int = 2
  num_heads: int = 2
  dropout: float = 0.1
  row_block: int = 0
  row_groups: int = 1

  @property
  def mask_id(self) -> int:
    return self.n_items + 1

  def setup(self):
    init = nn.initializers.truncated_normal(0.02)
    self.item_embed = nn.Embed(self.n_items + 2, self.dim,
                               embedding_init=init)
    self.pos_embed = nn.Embed(self.max_len, self.dim, embedding_init=init)
    self.embed_ln = nn.LayerNorm(1e-12)
    self.drop = Dropout(self.dropout)
    self.blocks = [layers.TransformerBlock(
        num_heads=self.num_heads, ff_dim=4 * self.dim, dropout=self.dropout,
        pre_ln=False, activation="gelu", ln_epsilon=1e-12, kernel_init=init,
        row_block=self.row_block)
                   for _ in range(self.num_blocks)]
    self.transform = nn.Dense(self.dim, kernel_init=init,
                              dot_general=matmul.flat_dot_general)
    self.transform_ln = nn.LayerNorm(1e-12)
    self.output_bias = self.param("output_bias", nn.initializers.zeros,
                                  (self.n_items + 2,))

  def __call__(self, seq: jnp.ndarray, train: bool = False,
               segment: jnp.ndarray | None = None,
               position: jnp.ndarray | None = None) -> jnp.ndarray:
    """Output vectors (B, L, D) of seq (B, L) (items, [mask] or padding);
    every position sees every non-padding position (of its own segment,
    when packed rows pass `segment` and `position` as in SASRec)."""
    if position is None:
      position = jnp.broadcast_to(layers.right_aligned_positions(
          seq.shape[1], self.max_len), seq.shape)
    x = self.item_embed(seq) + self.pos_embed(position)
    x = self.drop(self.embed_ln(x), deterministic=not train)
    mask = layers.attention_mask(seq != 0, causal=False, segment=segment)

    def encode(h, mask):
      for block in self.blocks:
        h = block(h, mask, train)
      return h

    x = layers.in_row_groups(encode, self.row_groups, x, mask)
    return self.transform_ln(nn.gelu(self.transform(x)))

  def output_layer(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The softmax's table (n_items + 1, D) and bias (n_items + 1,) over
    ids 0..n_items (the [mask] id is never a prediction)."""
    return (self.item_embed.embedding[:self.n_items + 1],
            self.output_bias[:self.n_items + 1])

  def sampled_logits(self, out: jnp.ndarray, answers: jnp.ndarray,
                     negatives: jnp.ndarray) -> jnp.ndarray:
    """(M, 1 + K) logits of out (M, D) against each row's answer (M,)
    (column 0) and K shared negatives (K,)."""
    own = jnp.sum(out * self.item_embed(answers), -1) + self.output_bias[
        answers]
    shared = out @ self.item_embed(negatives).T + self.output_bias[
        negatives][None, :]
    return jnp.concatenate([own[:, None], shared], axis=1)

  def score(self, seq: jnp.ndarray, candidates: jnp.ndarray) -> jnp.ndarray:
    """(B, N) logits of the item after history seq (B, L) for candidates
    (N,) shared or (B, N) per row: a [mask] is appended and its prediction
    is read. The model sees the last max_len - 1 items of the history (a
    full-width input loses its oldest column), whatever the input width."""
    if seq.shape[1] >= self.max_len:
      seq = seq[:, seq.shape[1] - self.max_len + 1:]
    masked = jnp.concatenate(
        [seq, jnp.full((seq.shape[0], 1), self.mask_id, seq.dtype)], axis=1)
    last = self(masked)[:, -1]                         # (B, D)
    emb, bias = self.item_embed(candidates), self.output_bias[candidates]
    if candidates.ndim == 1:
      return last @ emb.T + bias[None, :]
    return jnp.einsum("bd,bnd->bn", last, emb) + bias
