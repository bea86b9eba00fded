"""DeepFM and Wide & Deep on the CTR batch layout.

Papers: Guo et al., "DeepFM: A Factorization-Machine based Neural Network
for CTR Prediction" (IJCAI 2017); Cheng et al., "Wide & Deep Learning for
Recommender Systems" (DLRS 2016).

DeepFM: one embedding table shared by the FM part (first order + the
vmapped pairwise kernel of `fm.fm_pairwise`) and the deep part (an MLP on
the concatenated per-field embeddings); the two logits are summed.
Wide & Deep: a linear model on the sparse features (the "wide" part, here
without hand-made cross features) plus the same deep part.

Deviations: the deep part follows BARS/FuxiCTR (Dense -> BatchNorm -> ReLU
-> Dropout per hidden layer); Wide & Deep trains both parts with one Adam
optimiser (the paper uses FTRL for the wide part). Multi-hot fields enter
the MLP as their value-weighted (mean) pooled embedding.

Legend: B = batch, S = slots, F = fields, D = embedding dim, H = hidden.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.models.dropout import Dropout
from jaxrec.models.fm import EMBED_INIT, Linear, field_matrix, \
    fm_pairwise_batch


class DNN(nn.Module):
  """Dense -> [BatchNorm] -> ReLU -> [Dropout] per width, then Dense(1).

  (B, D_in) -> (B,). BatchNorm keeps running statistics in 'batch_stats'.
  """

  widths: Sequence[int]
  dropout: float = 0.0
  batch_norm: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, train: bool = False) -> jax.Array:
    dense = lambda w: nn.Dense(w, kernel_init=nn.initializers.xavier_normal())
    for width in self.widths:
      h = dense(width)(h)
      if self.batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
      h = nn.relu(h)
      if self.dropout:
        h = Dropout(self.dropout, deterministic=not train)(h)
    return dense(1)(h)[..., 0]


class _Deep(nn.Module):
  """Shared pieces: the embedding table, the per-field MLP input and the
  deep part."""

  n_features: int
  slot_fields: Sequence[int]
  dim: int = 10
  hidden: Sequence[int] = (400, 400, 400)
  dropout: float = 0.0
  batch_norm: bool = False

  def embed(self, ids, values):
    """(B, S) -> embeddings (B, S, D) and the MLP input (B, F * D)."""
    n_fields = max(self.slot_fields) + 1
    v = nn.Embed(self.n_features, self.dim, embedding_init=EMBED_INIT,
                 name="v")(ids)
    fields = jnp.einsum("bsd,sf->bfd", v * values[..., None],
                        field_matrix(self.slot_fields, n_fields))
    return v, fields.reshape(ids.shape[0], n_fields * self.dim)

  def deep(self, deep_in, train):
    """(B, F * D) -> the deep part's logit (B,)."""
    return DNN(self.hidden, self.dropout, self.batch_norm, name="dnn")(
        deep_in, train)


class DeepFM(_Deep):
  """FM logit + MLP logit over shared embeddings."""

  @nn.compact
  def __call__(self, ids, values, train: bool = False):
    v, deep_in = self.embed(ids, values)
    fm = (Linear(self.n_features, name="linear")(ids, values)
          + fm_pairwise_batch(v, values))
    return fm + self.deep(deep_in, train)


class WideDeep(_Deep):
  """Linear (wide) logit + MLP (deep) logit."""

  @nn.compact
  def __call__(self, ids, values, train: bool = False):
    _, deep_in = self.embed(ids, values)
    wide = Linear(self.n_features, name="linear")(ids, values)
    return wide + self.deep(deep_in, train)
