"""Matrix factorisation: a dot product of user and item embeddings.

Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender
Systems" (IEEE Computer 2009); trained on implicit feedback with BCE over
sampled negatives (as in NCF) or with BPR (Rendle et al., UAI 2009).

Legend: B = batch, N = candidates, D = embedding dim.
Deviation: biases are optional (off in BPR-MF's paper, on in Koren's).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models.layers import row_sum_sq


class MF(nn.Module):
  """Dot-product MF; ids 0 are padding rows that are never trained on.

  Attributes:
    n_users, n_items: real ids are 1..n (tables have n + 1 rows).
    dim: embedding size D.
    use_bias: add user, item and global biases.
    init_std: std of the normal initialiser of the embeddings.
    l2_biases: `l2_penalty` counts the row's user, item and global biases
      too, as Rendle et al.'s mf_simple.py regularises them (needs use_bias).
  """

  n_users: int
  n_items: int
  dim: int = 64
  use_bias: bool = False
  init_std: float = 0.1
  l2_biases: bool = False

  def setup(self):
    if self.l2_biases and not self.use_bias:
      raise ValueError("MF(l2_biases=True) regularises the biases; it needs "
                       "use_bias=True")
    init = nn.initializers.normal(self.init_std)
    self.user_embed = nn.Embed(self.n_users + 1, self.dim, embedding_init=init)
    self.item_embed = nn.Embed(self.n_items + 1, self.dim, embedding_init=init)
    if self.use_bias:
      zeros = nn.initializers.zeros
      self.user_bias = nn.Embed(self.n_users + 1, 1, embedding_init=zeros)
      self.item_bias = nn.Embed(self.n_items + 1, 1, embedding_init=zeros)
      self.global_bias = self.param("global_bias", zeros, ())

  def __call__(self, users: jnp.ndarray, items: jnp.ndarray) -> jnp.ndarray:
    """Logits (B,) for pairs users (B,), items (B,)."""
    return self.score(users, items[:, None])[:, 0]

  def score(self, users: jnp.ndarray, candidates: jnp.ndarray) -> jnp.ndarray:
    """Logits (B, N) for users (B,) and candidates (N,) shared or (B, N)."""
    u = self.user_embed(users)                         # (B, D)
    v = self.item_embed(candidates)                    # (N, D) or (B, N, D)
    if candidates.ndim == 1:
      logits = u @ v.T
    else:
      logits = jnp.einsum("bd,bnd->bn", u, v)
    if self.use_bias:
      item_b = self.item_bias(candidates)[..., 0]      # (N,) or (B, N)
      if candidates.ndim == 1:
        item_b = item_b[None, :]
      user_b = self.user_bias(users)                   # (B, 1)
      logits = logits + user_b + item_b + self.global_bias
    return logits

  def l2_penalty(self, users: jnp.ndarray, items: jnp.ndarray) -> jnp.ndarray:
    """(B,) squared norm of each row's user and item embeddings, and of
    its biases with l2_biases.

    `items` is (B,) or (B, K) (e.g. a BPR row's positive and negative);
    every item of a row counts.
    """
    penalty = row_sum_sq(self.user_embed(users)) + row_sum_sq(
        self.item_embed(items))
    if self.l2_biases:
      penalty += (row_sum_sq(self.user_bias(users)) +
                  row_sum_sq(self.item_bias(items)) + self.global_bias ** 2)
    return penalty
