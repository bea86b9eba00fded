"""GRU4Rec's sampled losses over a shared set of output columns.

Legend: B = batch rows, C = output columns (B in-batch targets followed by K
shared extra negatives).

Row b's target is column b (the in-batch targets come first); every other
column is a negative for it: the other rows' targets and the extra samples,
as in the official GRU4Rec (accidental hits are not removed there either).
`columns` (C,) bool marks the columns that exist: the targets of rows with
no session left are masked out, which is what the official code's shrinking
batch does.  Each function returns per-row losses (B,); the caller weights
rows (invalid rows contribute nothing) and divides by B.

Formulas: Hidasi & Karatzoglou, "Recurrent neural networks with top-k
gains for session-based recommendations", CIKM 2018 (BPR-max, TOP1-max);
the logQ-corrected cross-entropy is the official implementation's 'ce'
loss with `logq` (Hidasi & Czapp, RecSys 2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec import losses


def _diag(logits: jax.Array) -> jax.Array:
  """(B,) the target logit of each row: logits[b, b]."""
  b = logits.shape[0]
  return jnp.take_along_axis(logits, jnp.arange(b)[:, None], axis=1)[:, 0]


def _negative_mask(logits: jax.Array, columns: jax.Array) -> jax.Array:
  """(B, C) True where column j is an existing negative for row b."""
  b, c = logits.shape
  not_target = jnp.arange(c)[None, :] != jnp.arange(b)[:, None]
  return not_target & columns[None, :]


def sampled_softmax_xe(logits: jax.Array, columns: jax.Array,
                       log_q: jax.Array | None = None,
                       logq_weight: float = 1.0,
                       column_ids: jax.Array | None = None) -> jax.Array:
  """(B,) -log softmax(target) over the existing columns, logQ-corrected.

  A thin layer over `losses.sampled_softmax` (the one sampled softmax of
  jaxrec): absent columns get logit -inf, and logits are shifted by
  -logq_weight * log_q.  With every item as a column and no correction this
  is the full softmax cross-entropy.

  Args:
    logits: (B, C).
    columns: (C,) bool, the columns that exist.
    log_q: (C,) log sampling weight of each column, or None.
    logq_weight: the official `logq` parameter (1.0 = full correction).
    column_ids: (C,) item ids; when given, accidental hits (a negative
      column holding the row's own target item) are removed.  The official
      GRU4Rec keeps them, so the default is None.
  """
  b, c = logits.shape
  # A row's own target column always stays, so that rows the caller will
  # weight by zero still have a finite loss (and gradient).
  own = jnp.arange(c)[None, :] == jnp.arange(b)[:, None]
  z = jnp.where(columns[None, :] | own, logits, -jnp.inf)
  shift = (None if log_q is None or not logq_weight
           else logq_weight * log_q[None, :])
  pos = jnp.arange(b)
  if column_ids is None:
    return losses.sampled_softmax(z, pos, log_q=shift)
  return losses.sampled_softmax(z, pos, column_ids[:b], column_ids,
                                log_q=shift)


def _negative_softmax(logits: jax.Array, neg: jax.Array) -> jax.Array:
  """(B, C) softmax of the logits over each row's negatives (0 elsewhere)."""
  z = jnp.where(neg, logits, -jnp.inf)
  return jnp.where(neg, jax.nn.softmax(z, axis=1), 0.0)


def bpr_max(logits: jax.Array, columns: jax.Array,
            bpreg: float = 1.0) -> jax.Array:
  """(B,) BPR-max: -log sum_j s_j sigmoid(r_t - r_j) + bpreg sum_j s_j r_j^2,
  s = softmax over the negatives j (CIKM 2018, eq. 9 with its score
  regularisation)."""
  neg = _negative_mask(logits, columns)
  s = _negative_softmax(logits, neg)
  target = _diag(logits)[:, None]
  mix = jnp.sum(s * jax.nn.sigmoid(target - logits), axis=1)
  return -jnp.log(mix + 1e-24) + bpreg * jnp.sum(s * logits**2, axis=1)


def top1_max(logits: jax.Array, columns: jax.Array) -> jax.Array:
  """(B,) TOP1-max: sum_j s_j (sigmoid(r_j - r_t) + sigmoid(r_j^2))."""
  neg = _negative_mask(logits, columns)
  s = _negative_softmax(logits, neg)
  target = _diag(logits)[:, None]
  return jnp.sum(s * (jax.nn.sigmoid(logits - target)
                      + jax.nn.sigmoid(logits**2)), axis=1)
