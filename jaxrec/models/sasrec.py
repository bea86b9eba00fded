"""SASRec: self-attentive sequential recommendation.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
A causal Transformer over the user's item sequence; the hidden state at
position t scores the item at t + 1 by a dot product with the (shared) item
embedding table.

Legend: B = batch, L = input width (<= max_len), D = dim, N = candidates.

As in the paper and its code: item embeddings scaled by sqrt(D), learned
absolute positions, dropout on the embeddings, padding positions zeroed
after every block, pre-LN residual blocks (Eq. 4) with a ReLU feed-forward
of width D, a final layer norm, shared input/output embeddings, and BCE
with one sampled negative per position.
By default the blocks are standard pre-LN (x + Drop(F(LN(x))), keys and
queries normalised, an attention output projection); `sasrec_code=True`
takes the released code's layout instead (residuals from LN(x), raw keys
and values, no output projection; `layers.TransformerBlock`).
Deviations: positions are
right-aligned (`layers.right_aligned_positions`), which for a full-width
input is the paper's numbering and makes a shorter left-padded window give
identical scores; full softmax cross-entropy is an option (`sasrec_losses`,
Klenitskiy & Vasilev, RecSys 2023).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models import layers
from jaxrec.models.dropout import Dropout


class SASRec(nn.Module):
  """Causal Transformer over left-padded item sequences (id 0 = padding).

  Attributes:
    n_items: real items are 1..n_items.
    max_len: number of learned positions (the longest input).
    dim: D.
    num_blocks: Transformer blocks.
    num_heads: attention heads.
    dropout: rate on embeddings, attention and residual branches.
    pre_ln: pre-LN blocks (the paper); False for post-LN.
    sasrec_code: the block layout of the paper's released code
      (`layers.TransformerBlock`): residuals from the normalised input,
      raw keys, no attention output projection.
    causal_block: query-block size of the causal attention (0 = one
      (L, L) product); exact, it only skips the hidden upper triangle.
      At L = 200 the single product ran at 0.84x the speed of blocks of
      50 (results/bench_seq_ablation.md); a no-op for L <= 50.
    row_block: attention over the batch in blocks of this many rows, each
      recomputed in the backward pass (0 = the whole batch at once; same
      function: `layers.TransformerBlock`). At L = 200, with causal
      blocks of 50, rows in blocks of 8 ran at 0.88x the speed of the
      whole batch (results/bench_seq_ablation.md).
    row_groups: the blocks run on this many independent groups of rows
      (`layers.in_row_groups`), unrolled and not recomputed: the same
      function, each group drawing its own dropout masks. Meant for CPUs,
      where XLA runs two groups' independent ops at once on two cores;
      on an accelerator keep 1. At bench_seq's shapes (batch 128, L 200)
      8 groups ran 1.11x the speed of 1 (results/bench_seq_ablation.md).
  """

  n_items: int
  max_len: int = 50
  dim: int = 50
  num_blocks: int = 2
  num_heads: int = 1
  dropout: float = 0.5
  pre_ln: bool = True
  sasrec_code: bool = False
  causal_block: int = 50
  row_block: int = 0
  row_groups: int = 1

  def setup(self):
    init = nn.initializers.xavier_uniform()
    self.item_embed = nn.Embed(self.n_items + 1, self.dim,
                               embedding_init=init)
    self.pos_embed = nn.Embed(self.max_len, self.dim, embedding_init=init)
    self.drop = Dropout(self.dropout)
    self.blocks = [layers.TransformerBlock(
        num_heads=self.num_heads, ff_dim=self.dim, dropout=self.dropout,
        pre_ln=self.pre_ln, sasrec_code=self.sasrec_code,
        causal_block=self.causal_block, row_block=self.row_block,
        activation="relu", ln_epsilon=1e-8)
                   for _ in range(self.num_blocks)]
    self.final_ln = nn.LayerNorm(1e-8)

  def __call__(self, seq: jnp.ndarray, train: bool = False,
               segment: jnp.ndarray | None = None,
               position: jnp.ndarray | None = None) -> jnp.ndarray:
    """Hidden states (B, L, D) of item ids seq (B, L); position t has seen
    seq[:, :t + 1] only.

    For packed rows (several sequences per row) pass `segment` (B, L) ids,
    so attention stays within a sequence, and `position` (B, L) ids
    (right-aligned per sequence); by default a row is one left-padded
    sequence with `layers.right_aligned_positions`.
    """
    valid = (seq != 0)[..., None]
    if position is None:
      position = jnp.broadcast_to(layers.right_aligned_positions(
          seq.shape[1], self.max_len), seq.shape)
    x = self.item_embed(seq) * jnp.sqrt(float(self.dim))
    x = x + self.pos_embed(position)
    x = self.drop(x, deterministic=not train) * valid
    mask = layers.attention_mask(seq != 0, causal=True, segment=segment)

    def encode(h, mask, valid):
      for block in self.blocks:
        h = block(h, mask, train) * valid
      return h

    x = layers.in_row_groups(encode, self.row_groups, x, mask, valid)
    return self.final_ln(x)

  def item_logits(self, hidden: jnp.ndarray, items: jnp.ndarray
                  ) -> jnp.ndarray:
    """Dot products (...,) of hidden (..., D) with items (...,) alike."""
    return jnp.sum(hidden * self.item_embed(items), axis=-1)

  def output_layer(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The softmax's table (n_items + 1, D) (the shared item embeddings)
    and bias (n_items + 1,) (zeros: SASRec has none) over every id."""
    table = self.item_embed.embedding
    return table, jnp.zeros(table.shape[:1], table.dtype)

  def score(self, seq: jnp.ndarray, candidates: jnp.ndarray) -> jnp.ndarray:
    """(B, N) next-item logits after seq (B, L) for candidates (N,) shared
    or (B, N) per row."""
    last = self(seq)[:, -1]                            # (B, D)
    if candidates.ndim == 1:
      return last @ self.item_embed(candidates).T
    return jnp.einsum("bd,bnd->bn", last, self.item_embed(candidates))
