"""Per-user ranking metrics (SPEC §2), as pure jit-able jnp functions.

Legend: B = batch of users, N = candidates per user, K = cutoff.

Ranks are 0-based. Ties are pessimistic: the item being ranked (the target,
or a relevant item) sits below every competing candidate with an equal score,
so a model that outputs a constant cannot look good.

NaN scores are resolved against the model in the same spirit: a NaN target or
relevant item ranks below every non-excluded candidate, and a NaN competitor
ranks above every target or relevant item. NaN outputs can therefore only
lower a metric, never raise it, and a broken model shows up in the numbers.

Every function returns per-user values of shape (B,) so that significance
tests can pair users across models; callers average.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def target_rank(scores: jax.Array, target: jax.Array,
                exclude: jax.Array | None = None) -> jax.Array:
  """0-based pessimistic rank of one target among non-excluded candidates.

  rank = #{j != t, not excluded, s_j >= s_t}, where any NaN on either side
  counts as the competitor winning (see the module docstring). The target is
  never counted against itself, even when `exclude` marks it: exclusion only
  removes competitors.

  Args:
    scores: (B, N) float scores.
    target: (B,) int index of the target column in [0, N).
    exclude: (B, N) bool, True for candidates that are not competitors
      (e.g. training items, padding), or None.

  Returns:
    (B,) int32 ranks in [0, N - 1].
  """
  n = scores.shape[1]
  target = target.astype(jnp.int32)
  s_t = jnp.take_along_axis(scores, target[:, None], axis=1)  # (B, 1)
  beats = (scores >= s_t) | jnp.isnan(scores) | jnp.isnan(s_t)
  is_target = jnp.arange(n, dtype=jnp.int32)[None, :] == target[:, None]
  counted = beats & ~is_target
  if exclude is not None:
    counted = counted & ~exclude
  return jnp.sum(counted, axis=1, dtype=jnp.int32)


def hit_rate(rank: jax.Array, k: int) -> jax.Array:
  """HR@K = 1[r < K]. rank: (B,) int. Returns (B,) float32."""
  return (rank < k).astype(jnp.float32)


def ndcg(rank: jax.Array, k: int) -> jax.Array:
  """NDCG@K with one relevant item = 1[r < K] / log2(r + 2). Returns (B,)."""
  gain = 1.0 / jnp.log2(rank.astype(jnp.float32) + 2.0)
  return jnp.where(rank < k, gain, 0.0)


def mrr(rank: jax.Array, k: int | None = None) -> jax.Array:
  """Reciprocal rank 1 / (r + 1), set to 0 for r >= K when K is given."""
  rr = 1.0 / (rank.astype(jnp.float32) + 1.0)
  return rr if k is None else jnp.where(rank < k, rr, 0.0)


def relevance_in_rank_order(scores: jax.Array, relevant: jax.Array,
                            exclude: jax.Array | None = None) -> jax.Array:
  """Relevance flags of the candidates listed in pessimistic rank order.

  A relevant item always wins over `exclude`: it stays in the ranking even if
  marked excluded, because dropping it would silently inflate recall.
  Excluded items are listed last and are never relevant, so a prefix of
  length K holds exactly the hits in the top K (fewer than K real items
  when fewer than K candidates remain).

  A single lexicographic sort replaces top-k (which breaks ties by index, not
  pessimistically): keys are (group, -score, relevant), where group is
  0 = NaN competitor, 1 = scored item, 2 = NaN relevant item, 3 = excluded.

  Args:
    scores: (B, N) float.
    relevant: (B, N) bool.
    exclude: (B, N) bool or None.

  Returns:
    (B, N) bool, entry [b, i] is True iff the item at rank i is relevant.
  """
  relevant = relevant.astype(bool)
  nan = jnp.isnan(scores)
  group = jnp.where(nan, jnp.where(relevant, 2, 0), 1)
  if exclude is not None:
    group = jnp.where(exclude & ~relevant, 3, group)
  neg_score = jnp.where(nan, 0.0, -scores)
  *_, rel_sorted = jax.lax.sort(
      (group.astype(jnp.int32), neg_score, relevant.astype(jnp.int32)),
      dimension=1, num_keys=3)
  return rel_sorted.astype(bool)


def multi_relevant_metrics(scores: jax.Array, relevant: jax.Array,
                           exclude: jax.Array | None,
                           ks: Sequence[int]) -> dict[str, jax.Array]:
  """Recall, Precision, NDCG and MAP at each K from one sort.

  Users without any relevant item get NaN for Recall, NDCG and MAP (they
  have no defined value; callers should drop such users) and 0 for
  Precision (hits / K is well defined).

  MAP@K follows Microsoft Recommenders' `map_at_k` (Spark MLlib
  meanAveragePrecisionAt): AP@K = sum over hits at 0-based rank i < K of
  (hits in ranks 0..i) / (i + 1), divided by min(K, n_relevant).

  Args:
    scores: (B, N) float.
    relevant: (B, N) bool.
    exclude: (B, N) bool or None; `relevant` takes precedence.
    ks: static cutoffs.

  Returns:
    Dict with keys f'Recall@{k}', f'Precision@{k}', f'NDCG@{k}', f'MAP@{k}',
    each (B,) float32.
  """
  n = scores.shape[1]
  rel_sorted = relevance_in_rank_order(scores, relevant, exclude)
  n_rel = jnp.sum(relevant.astype(bool), axis=1, dtype=jnp.int32)  # (B,)
  has_rel = n_rel > 0
  # One prefix of length max(K) serves every cutoff.
  k_max = min(max(ks), n)
  hits = rel_sorted[:, :k_max].astype(jnp.float32)  # (B, K_max)
  pos = jnp.arange(1, k_max + 1, dtype=jnp.float32)
  discount = 1.0 / jnp.log2(pos + 1.0)  # (K_max,)
  ideal = jnp.cumsum(discount)  # ideal DCG of the first j + 1 ranks
  cum_hits = jnp.cumsum(hits, axis=1)  # (B, K_max)
  out = {}
  for k in ks:
    kc = min(k, n)
    h = hits[:, :kc]
    n_hits = cum_hits[:, kc - 1]
    m = jnp.minimum(n_rel, k)  # ranks an ideal list can fill
    safe_m = jnp.maximum(m, 1)
    dcg = jnp.sum(h * discount[None, :kc], axis=1)
    prec_at_hits = h * cum_hits[:, :kc] / pos[None, :kc]
    out[f"Recall@{k}"] = jnp.where(
        has_rel, n_hits / jnp.maximum(n_rel, 1), jnp.nan)
    out[f"Precision@{k}"] = n_hits / k
    out[f"NDCG@{k}"] = jnp.where(has_rel, dcg / ideal[safe_m - 1], jnp.nan)
    out[f"MAP@{k}"] = jnp.where(
        has_rel, jnp.sum(prec_at_hits, axis=1) / safe_m, jnp.nan)
  return out


def recall_at_k(scores: jax.Array, relevant: jax.Array,
                exclude: jax.Array | None, k: int) -> jax.Array:
  """Hits in the top K / n_relevant; NaN without relevant items. (B,)."""
  return multi_relevant_metrics(scores, relevant, exclude, (k,))[
      f"Recall@{k}"]


def precision_at_k(scores: jax.Array, relevant: jax.Array,
                   exclude: jax.Array | None, k: int) -> jax.Array:
  """Hits in the top K / K (K even when fewer candidates remain). (B,)."""
  return multi_relevant_metrics(scores, relevant, exclude, (k,))[
      f"Precision@{k}"]


def ndcg_at_k_multi(scores: jax.Array, relevant: jax.Array,
                    exclude: jax.Array | None, k: int) -> jax.Array:
  """Binary-relevance DCG@K / ideal DCG@K; NaN without relevant items."""
  return multi_relevant_metrics(scores, relevant, exclude, (k,))[f"NDCG@{k}"]


def average_precision_at_k(scores: jax.Array, relevant: jax.Array,
                           exclude: jax.Array | None, k: int) -> jax.Array:
  """AP@K normalised by min(K, n_relevant) (Recommenders' map_at_k). (B,)."""
  return multi_relevant_metrics(scores, relevant, exclude, (k,))[f"MAP@{k}"]


# CTR metrics (SPEC "CTR protocol"): exact, over the full evaluation set, in
# float64 on the host (a few 100k scores sort in milliseconds).


def auc(scores, labels) -> float:
  """Exact ROC AUC; tied scores count 1/2 (average ranks, Mann-Whitney U).

  Args:
    scores: (N,) float, any monotone score (logits or probabilities).
    labels: (N,) in {0, 1}.

  Returns:
    P(score of a random positive > score of a random negative) + 1/2 P(tie);
    NaN when either class is absent. A NaN score raises ValueError.
  """
  import numpy as np
  from scipy import stats

  scores = np.asarray(scores, np.float64).ravel()
  labels = np.asarray(labels).ravel().astype(bool)
  if np.isnan(scores).any():
    raise ValueError("auc: NaN scores")
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if not n_pos or not n_neg:
    return float("nan")
  ranks = stats.rankdata(scores, method="average")
  u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def log_loss_per_example(logits, labels):
  """-[y log p + (1 - y) log(1 - p)] with p = sigmoid(logit), computed from
  logits (softplus form, no clipping needed). (N,) float64."""
  import numpy as np

  z = np.asarray(logits, np.float64).ravel()
  y = np.asarray(labels, np.float64).ravel()
  return np.logaddexp(0.0, z) - y * z
