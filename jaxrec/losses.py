"""Loss functions, pure jnp, returning per-example values.

Legend: B = batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def pointwise_bce(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """(B,) binary cross-entropy of logits (B,) against labels (B,) in {0, 1}."""
  return optax.sigmoid_binary_cross_entropy(logits, labels)


def bpr(pos_logits: jnp.ndarray, neg_logits: jnp.ndarray) -> jnp.ndarray:
  """(B,) Bayesian personalised ranking: -log sigmoid(pos - neg)."""
  return -jax.nn.log_sigmoid(pos_logits - neg_logits)
