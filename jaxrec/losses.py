"""Loss functions, pure jnp, returning per-example values.

Legend: B = batch, M = rows, V = output ids, D = dim.
"""

from __future__ import annotations

import functools

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def full_softmax(hidden: jnp.ndarray, table: jnp.ndarray, bias: jnp.ndarray,
                 labels: jnp.ndarray, chunk: int = 2048) -> jnp.ndarray:
  """(M,) cross-entropy of a softmax over every row of the output table:
  logits = hidden (M, D) @ table (V, D)^T + bias (V,), the answer of row m
  being id labels[m].  A bias of -inf takes an id out of the softmax.

  Equal to `optax.softmax_cross_entropy_with_integer_labels` on the (M, V)
  logit matrix, which is never built: the log-sum-exp runs over chunks of
  `chunk` ids (a scan), and the backward pass recomputes each chunk's
  logits.  Memory is O(M * chunk); for its speed at BERT4Rec's sizes
  (M 1,600, V 54,543) see scripts/bench_softmax.py.
  """
  return _full_softmax_fwd(hidden, table, bias, labels, chunk)[0]


def chunk_width(v: int, chunk: int, align: int = 16) -> tuple[int, int]:
  """(C, W): the fewest chunks C of at most `chunk` ids that cover v ids,
  made equally wide, W rounded up to a multiple of `align` but never past
  `chunk` (so the padding C * W - v is under C * align; a fixed width of
  `chunk` would pad V = 3,417 to 4,096 at chunk 2,048, a sixth of the
  softmax's work wasted)."""
  n = -(-v // chunk)
  width = -(-v // n)                      # <= chunk, as n >= v / chunk
  return n, min(-(-width // align) * align, chunk)


def _by_chunk(table, bias, chunk):
  """table (V, D), bias (V,) -> (C, W, D), (C, W) with (C, W) from
  `chunk_width`, padded ids getting bias -inf."""
  n, width = chunk_width(table.shape[0], chunk)
  pad = n * width - table.shape[0]
  return (jnp.pad(table, ((0, pad), (0, 0))).reshape(n, width, -1),
          jnp.pad(bias, (0, pad), constant_values=-jnp.inf).reshape(n, width))


def _full_softmax_fwd(hidden, table, bias, labels, chunk):
  def step(carry, part):
    top, total = carry
    logits = hidden @ part[0].T + part[1][None, :]           # (M, chunk)
    new_top = jnp.maximum(top, logits.max(1))
    total = (total * jnp.exp(top - new_top)
             + jnp.exp(logits - new_top[:, None]).sum(1))
    return (new_top, total), None

  m = hidden.shape[0]
  start = (jnp.full((m,), -jnp.inf, hidden.dtype), jnp.zeros((m,), hidden.dtype))
  (top, total), _ = jax.lax.scan(step, start, _by_chunk(table, bias, chunk))
  lse = top + jnp.log(total)
  answer = jnp.sum(hidden * table[labels], -1) + bias[labels]
  return lse - answer, (hidden, table, bias, labels, lse)


def _full_softmax_bwd(chunk, res, g):
  hidden, table, bias, labels, lse = res

  def step(d_hidden, part):
    logits = hidden @ part[0].T + part[1][None, :]
    p = jnp.exp(logits - lse[:, None]) * g[:, None]        # (M, chunk)
    # hidden^T @ p, (D, chunk), not p^T @ hidden: XLA's CPU dot is about
    # twice as fast with the long axis last (scripts/bench_softmax.py).
    return d_hidden + p @ part[0], (hidden.T @ p, p.sum(0))

  d_hidden, (d_table_t, d_bias) = jax.lax.scan(
      step, jnp.zeros_like(hidden), _by_chunk(table, bias, chunk))
  v = table.shape[0]
  d_table = jnp.swapaxes(d_table_t, 1, 2).reshape(-1, hidden.shape[1])[:v]
  d_bias = d_bias.reshape(-1)[:v]
  # The answer's own term, -logit[label].
  d_hidden = d_hidden - g[:, None] * table[labels]
  d_table = d_table.at[labels].add(-g[:, None] * hidden)
  d_bias = d_bias.at[labels].add(-g)
  return d_hidden, d_table, d_bias, None


full_softmax.defvjp(_full_softmax_fwd, _full_softmax_bwd)
