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

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """(..., D_in) -> (..., widths[-1])."""
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x


def pair_grid(users: jnp.ndarray, candidates: jnp.ndarray):
  """Broadcasts ids to pairs: users (B,) and candidates (N,) or (B, N)
  -> two (B, N) id arrays."""
  if candidates.ndim == 1:
    candidates = jnp.broadcast_to(candidates[None, :],
                                  (users.shape[0], candidates.shape[0]))
  return jnp.broadcast_to(users[:, None], candidates.shape), candidates
