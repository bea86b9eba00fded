"""Logistic regression, FM and FFM on the CTR batch layout.

Papers: Rendle, "Factorization Machines" (ICDM 2010); Juan et al.,
"Field-aware Factorization Machines for CTR Prediction" (RecSys 2016).

Every model maps `ids (B, S) int32, values (B, S) float32 -> logits (B,)`
(see `jaxrec.data.fields` for the layout; id 0 is padding and has value 0,
so it never contributes). Embedding tables are `nn.Embed` parameters named
'embedding', which is how the trainer finds them for the L2 penalty.

Deviations: FFM pairs features of different fields only (for one-hot fields
that is every pair; features inside one multi-hot field are pooled first).
Embeddings start at N(0, 1e-4^2) as in FuxiCTR, the library behind BARS.

Legend: B = batch, S = slots, F = fields, D = embedding dim.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

EMBED_INIT = nn.initializers.normal(1e-4)


def fm_pairwise(v: jax.Array, x: jax.Array) -> jax.Array:
  """FM's second-order term for ONE example, in O(S D).

  sum_{i<j} <v_i, v_j> x_i x_j
      = 0.5 * sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2].

  Args:
    v: (S, D) embeddings of the example's features.
    x: (S,) their values.

  Returns:
    () the interaction.
  """
  vx = v * x[:, None]
  return 0.5 * jnp.sum(jnp.sum(vx, axis=0) ** 2 - jnp.sum(vx ** 2, axis=0))


# (B, S, D), (B, S) -> (B,)
fm_pairwise_batch = jax.vmap(fm_pairwise)


def field_matrix(slot_fields: Sequence[int], n_fields: int) -> jnp.ndarray:
  """(S, F) one-hot slot -> field map, to pool slots per field."""
  return jax.nn.one_hot(jnp.asarray(slot_fields), n_fields)


class Linear(nn.Module):
  """First-order term w_0 + sum_i w_i x_i. (B, S), (B, S) -> (B,)."""

  n_features: int

  @nn.compact
  def __call__(self, ids: jax.Array, values: jax.Array) -> jax.Array:
    w = nn.Embed(self.n_features, 1, embedding_init=EMBED_INIT, name="w")
    bias = self.param("bias", nn.initializers.zeros, ())
    return bias + jnp.sum(w(ids)[..., 0] * values, axis=-1)


class LR(nn.Module):
  """Logistic regression on the sparse features."""

  n_features: int
  slot_fields: Sequence[int] = ()
  dim: int = 0  # unused; the sweep passes one dim to every model

  @nn.compact
  def __call__(self, ids, values, train: bool = False):
    return Linear(self.n_features, name="linear")(ids, values)


class FM(nn.Module):
  """Rendle's FM: LR + pairwise interactions of D-dim factors, the pairwise
  kernel written for one example and vmapped over the batch."""

  n_features: int
  slot_fields: Sequence[int] = ()
  dim: int = 10

  @nn.compact
  def __call__(self, ids, values, train: bool = False):
    v = nn.Embed(self.n_features, self.dim, embedding_init=EMBED_INIT,
                 name="v")(ids)                               # (B, S, D)
    return (Linear(self.n_features, name="linear")(ids, values)
            + fm_pairwise_batch(v, values))


class FFM(nn.Module):
  """Field-aware FM: feature i keeps one D-dim vector per field, and the
  pair (i, j) uses <v_{i, field(j)}, v_{j, field(i)}> x_i x_j."""

  n_features: int
  slot_fields: Sequence[int] = ()
  dim: int = 10

  @nn.compact
  def __call__(self, ids, values, train: bool = False):
    n_fields = max(self.slot_fields) + 1
    table = nn.Embed(self.n_features, n_fields * self.dim,
                     embedding_init=EMBED_INIT, name="v")
    v = table(ids).reshape(ids.shape + (n_fields, self.dim))  # (B, S, F, D)
    v = v * values[..., None, None]
    # pooled[b, f, g] = sum of field f's features' vectors toward field g.
    pooled = jnp.einsum("bsgd,sf->bfgd", v,
                        field_matrix(self.slot_fields, n_fields))
    pairs = jnp.einsum("bfgd,bgfd->bfg", pooled, pooled)   # (B, F, F)
    upper = jnp.triu(jnp.ones((n_fields, n_fields)), k=1)  # each f < g once
    return (Linear(self.n_features, name="linear")(ids, values)
            + jnp.sum(pairs * upper[None], axis=(1, 2)))
