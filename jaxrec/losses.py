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


def sampled_softmax(logits: jnp.ndarray, pos_index: jnp.ndarray,
                    pos_ids: jnp.ndarray | None = None,
                    candidate_ids: jnp.ndarray | None = None,
                    log_q: jnp.ndarray | None = None) -> jnp.ndarray:
  """(B,) sampled-softmax cross-entropy with logQ correction and
  accidental-hit removal; the in-batch InfoNCE of two-tower retrieval.

  Row b's positive is column `pos_index[b]` of `logits` (B, N); every other
  column is a sampled negative.  For in-batch negatives the candidates are
  the batch's own positives (N = B, pos_index = arange(B)); mixed negative
  sampling appends uniformly drawn items as further columns.

  logQ correction (Yi et al., RecSys 2019; Bengio & Senecal 2008): a
  candidate drawn with probability q_j is over-represented among negatives
  in proportion to q_j, so every column, the positive's too, is scored as
  logits - log_q.  Accidental hits: a column other than `pos_index[b]`
  whose id equals `pos_ids[b]` is the row's positive drawn again, not a
  negative; it gets logit -inf, hence exactly zero softmax mass and zero
  gradient.  Columns with id 0 (padding) are removed the same way.

  Args:
    logits: (B, N) scores of each row against each candidate.
    pos_index: (B,) int column of each row's positive.
    pos_ids: (B,) int item id of each row's positive; with candidate_ids,
      enables accidental-hit removal.
    candidate_ids: (N,) or (B, N) int item id of each column.
    log_q: (N,) or (B, N) log sampling probability of each column, or None
      for no correction.

  Returns:
    (B,) per-row loss -log softmax(corrected logits)[b, pos_index[b]].
  """
  if log_q is not None:
    logits = logits - jnp.broadcast_to(log_q, logits.shape)
  if (pos_ids is None) != (candidate_ids is None):
    raise ValueError("pos_ids and candidate_ids go together")
  if candidate_ids is not None:
    cand = jnp.broadcast_to(candidate_ids, logits.shape)
    cols = jnp.arange(logits.shape[1])
    is_pos_col = cols[None, :] == pos_index[:, None]
    drop = ((cand == pos_ids[:, None]) | (cand == 0)) & ~is_pos_col
    logits = jnp.where(drop, -jnp.inf, logits)
  return optax.softmax_cross_entropy_with_integer_labels(logits, pos_index)


def triplet(pos_scores: jnp.ndarray, neg_scores: jnp.ndarray,
            margin: float) -> jnp.ndarray:
  """(B,) hinge max(0, margin - pos + neg), averaged over negatives.

  Args:
    pos_scores: (B,) similarity to the positive.
    neg_scores: (B, M) similarity to M negatives.
    margin: alpha.
  """
  return jnp.mean(jax.nn.relu(margin - pos_scores[:, None] + neg_scores),
                  axis=-1)
