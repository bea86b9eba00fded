"""Blocks shared by model families.

Legend: B = batch, N = candidates, D = width.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Tower(nn.Module):
  """A ReLU MLP: Dense -> ReLU for every width in `widths`.

  Attributes:
    widths: hidden widths, e.g. (32, 16, 8); () is the identity.
    dropout: rate after each hidden layer (0 = none).
  """

  widths: Sequence[int]
  dropout: float = 0.0

  def setup(self):
    self.dense = [nn.Dense(w) for w in self.widths]  # dense_0, dense_1, ...
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """(..., D_in) -> (..., widths[-1])."""
    return self.after_first(self.dense[0](x), train) if self.widths else x

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


def pair_grid(users: jnp.ndarray, candidates: jnp.ndarray):
  """Broadcasts ids to pairs: users (B,) and candidates (N,) or (B, N)
  -> two (B, N) id arrays."""
  if candidates.ndim == 1:
    candidates = jnp.broadcast_to(candidates[None, :],
                                  (users.shape[0], candidates.shape[0]))
  return jnp.broadcast_to(users[:, None], candidates.shape), candidates
