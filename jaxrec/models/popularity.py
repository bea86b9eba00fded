"""Most-popular baseline: every user gets items ranked by training count."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def popularity_score_fn(item_counts: np.ndarray):
  """A `score_fn(users (B,), candidates (N,) or (B, N)) -> (B, N)`.

  Args:
    item_counts: (n_items + 1,) training interactions per item.
  """
  counts = jnp.asarray(item_counts, jnp.float32)

  def score_fn(users, candidates):
    scores = counts[candidates]
    if candidates.ndim == 1:
      scores = jnp.broadcast_to(scores, (users.shape[0],) + scores.shape)
    return scores

  return score_fn
