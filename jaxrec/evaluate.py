"""Chunked full-ranking and sampled-ranking evaluation (SPEC §2).

Legend: U = users evaluated, C = users per chunk, N = candidates per user,
W = padded width of a per-user id list, K = cutoff.

Scoring protocol: `score_fn(users (C,) int32, candidates) -> (C, N) float`,
where candidates is (N,) shared by all users (full ranking passes
`arange(n_items + 1)`, so column i is item i) or (C, N) per user (sampled
ranking). Build it by closing over parameters, e.g.
`lambda u, c: model.apply(params, u, c, method='score')`. Prefer
`jax.tree_util.Partial(fn, params)`: its parameters become traced arguments,
so the compiled chunk function is reused across calls with new parameters
(e.g. every epoch) instead of being recompiled with parameters baked in.

Users go in fixed-size chunks (the last padded with dummy rows, then
dropped): one compile per call shape, device memory O(C * N), never
O(U * N). Only ids go in and per-user values come out; masks are built on
device by scatter. Results are dicts of per-user arrays keyed like 'HR@10'
(callers prefix the protocol); `summarize` averages them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec import metrics

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
PerUser = dict[str, np.ndarray]


def rank_metrics(rank: np.ndarray | jax.Array, ks: Sequence[int]) -> PerUser:
  """(U,) ranks -> (U,) 'rank', 'HR@k', 'NDCG@k', 'MRR@k' per k, and 'MRR'."""
  rank = jnp.asarray(rank, jnp.int32)
  out = {"rank": rank}
  for k in ks:
    out[f"HR@{k}"] = metrics.hit_rate(rank, k)
    out[f"NDCG@{k}"] = metrics.ndcg(rank, k)
    out[f"MRR@{k}"] = metrics.mrr(rank, k)
  out["MRR"] = metrics.mrr(rank)
  return {name: np.asarray(v) for name, v in out.items()}


def summarize(per_user: PerUser) -> dict[str, float]:
  """Means over users of every metric except 'rank'.

  NaN (a user without relevant items) propagates on purpose, so that such
  users are filtered out upstream rather than silently averaged away.
  """
  return {name: float(np.mean(v, dtype=np.float64))
          for name, v in per_user.items() if name != "rank"}


def labelled(results: list[tuple[str, PerUser]]) -> tuple[dict, dict]:
  """Means and per-user values keyed '<protocol label>/<metric>'.

  Args:
    results: (label, per-user metrics) pairs, e.g. ('full', ...).
  Returns:
    ({key: mean over users}, {key: (U,) per-user values}).
  """
  means = {f"{label}/{k}": v for label, values in results
           for k, v in summarize(values).items()}
  per_user = {f"{label}/{k}": v for label, values in results
              for k, v in values.items()}
  return means, per_user


def _pytree_fn(score_fn: ScoreFn) -> jax.tree_util.Partial:
  # A Partial is a pytree, so it can be a jit argument: its leaves (params)
  # are traced and its function is part of the compilation cache key.
  if isinstance(score_fn, jax.tree_util.Partial):
    return score_fn
  return jax.tree_util.Partial(score_fn)


def _scores(score_fn: ScoreFn, users: jax.Array,
            candidates: jax.Array) -> jax.Array:
  """(C, N) scores, with a clear error for a wrongly shaped score_fn."""
  scores = score_fn(users, candidates)
  want = (users.shape[0], candidates.shape[-1])
  if scores.shape != want:
    raise ValueError(f"score_fn returned shape {scores.shape}; expected "
                     f"{want} (users, candidates)")
  return scores


def _scatter_mask(ids: jax.Array, n: int) -> jax.Array:
  """(C, W) ids in [0, n) -> (C, n) bool with True at each listed id."""
  rows = jnp.broadcast_to(jnp.arange(ids.shape[0])[:, None], ids.shape)
  return jnp.zeros((ids.shape[0], n), bool).at[rows, ids].set(True)


@functools.partial(jax.jit, static_argnames=("n_items",))
def _full_chunk(score_fn, users, targets, excl_ids, n_items):
  """(C,) ranks of targets among all items minus exclusions and padding."""
  n = n_items + 1
  scores = _scores(score_fn, users, jnp.arange(n, dtype=jnp.int32))
  exclude = _scatter_mask(excl_ids, n).at[:, 0].set(True)
  return metrics.target_rank(scores, targets, exclude)


@jax.jit
def _sampled_chunk(score_fn, users, candidates):
  """(C,) ranks of column 0 among the other valid candidates."""
  scores = _scores(score_fn, users, candidates)
  # Padding ids and copies of the target are not competitors.
  exclude = (candidates == 0) | (candidates == candidates[:, :1])
  target = jnp.zeros(candidates.shape[:1], jnp.int32)
  return metrics.target_rank(scores, target, exclude)


@functools.partial(jax.jit, static_argnames=("n_items", "ks"))
def _multi_chunk(score_fn, users, rel_ids, excl_ids, n_items, ks):
  """Dict of (C,) Recall/Precision/NDCG/MAP over all items."""
  n = n_items + 1
  scores = _scores(score_fn, users, jnp.arange(n, dtype=jnp.int32))
  relevant = _scatter_mask(rel_ids, n).at[:, 0].set(False)
  exclude = _scatter_mask(excl_ids, n).at[:, 0].set(True)
  return metrics.multi_relevant_metrics(scores, relevant, exclude, ks)


def _ids(x, name: str, ndim: int = 1) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != ndim or not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f"{name} must be a {ndim}-D integer array; got "
                     f"shape {x.shape}, dtype {x.dtype}")
  return x.astype(np.int32)


def _check_range(x: np.ndarray, lo: int, hi: int, name: str) -> None:
  if x.size and (x.min() < lo or x.max() > hi):
    raise ValueError(f"{name} must lie in [{lo}, {hi}]; got values in "
                     f"[{x.min()}, {x.max()}]")


def _csr(indptr, items, n_rows: int, n_items: int,
         name: str) -> tuple[np.ndarray, np.ndarray, int]:
  """Validated (indptr (U+1,) int64, items (nnz,) int32, width W >= 1)."""
  indptr = np.asarray(indptr, np.int64)
  items = _ids(items, f"{name}_items")
  if (indptr.shape != (n_rows + 1,) or indptr[0] != 0
      or indptr[-1] != items.size or np.any(np.diff(indptr) < 0)):
    raise ValueError(f"{name}_indptr must be ({n_rows + 1},) non-decreasing "
                     f"from 0 to len({name}_items)={items.size}")
  _check_range(items, 0, n_items, f"{name}_items")
  # One width for the whole call keeps every chunk the same shape.
  width = max(int(np.diff(indptr).max(initial=0)), 1)
  return indptr, items, width


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
  """Pads axis 0 to `size` by repeating the last row (a valid id)."""
  pad = [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return np.pad(x, pad, mode="edge")


def _csr_block(indptr: np.ndarray, items: np.ndarray, lo: int, hi: int,
               size: int, width: int) -> np.ndarray:
  """(size, width) int32 lists of rows lo..hi-1, right-padded with id 0."""
  lens = indptr[lo + 1:hi + 1] - indptr[lo:hi]
  rows = np.repeat(np.arange(hi - lo), lens)
  cols = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
  out = np.zeros((size, width), np.int32)
  out[rows, cols] = items[indptr[lo]:indptr[hi]]
  return out


def _map_chunks(run: Callable, n_rows: int, chunk_size: int,
                inputs: Callable[[int, int, int], tuple]):
  """Runs `run(*inputs(lo, hi, size))` per chunk; concatenates, drops pads."""
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
  # Small evaluations need not pay for a full chunk of dummy rows.
  size = min(chunk_size, n_rows)
  # Dispatch is asynchronous: the host prepares chunk i + 1 while the device
  # works on chunk i, and the only sync is the device_get at the end.
  outs = [run(*inputs(lo, min(lo + size, n_rows), size))
          for lo in range(0, n_rows, size)]
  outs = jax.device_get(outs)
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n_rows], *outs)


def full_ranking(score_fn: ScoreFn, users, targets, exclude_indptr,
                 exclude_items, n_items: int, *, chunk_size: int = 256,
                 ks: Sequence[int] = (10,)) -> PerUser:
  """Ranks each user's target item against all items 1..n_items.

  The padding item 0 and the user's exclusion list (training items, and for
  test also the validation item) are removed from the competitors. A target
  that also appears in its own exclusion list is still ranked.

  Args:
    score_fn: see the module docstring; called with candidates (n_items+1,).
    users: (U,) int user ids.
    targets: (U,) int item ids in [1, n_items].
    exclude_indptr: (U + 1,) CSR row pointers into exclude_items.
    exclude_items: (nnz,) int item ids in [0, n_items].
    n_items: number of real items.
    chunk_size: users per device call.
    ks: cutoffs.

  Returns:
    Per-user arrays: 'rank' (U,) int32; 'HR@k', 'NDCG@k', 'MRR@k' per k and
    'MRR', each (U,) float32.
  """
  users = _ids(users, "users")
  targets = _ids(targets, "targets")
  if targets.shape != users.shape:
    raise ValueError(f"targets {targets.shape} must match users "
                     f"{users.shape}")
  _check_range(targets, 1, n_items, "targets")
  indptr, items, width = _csr(exclude_indptr, exclude_items, users.size,
                              n_items, "exclude")
  if users.size == 0:
    return rank_metrics(np.zeros(0, np.int32), ks)
  fn = _pytree_fn(score_fn)

  def inputs(lo, hi, size):
    return (_pad_rows(users[lo:hi], size), _pad_rows(targets[lo:hi], size),
            _csr_block(indptr, items, lo, hi, size, width))

  ranks = _map_chunks(
      lambda u, t, e: _full_chunk(fn, u, t, e, n_items=n_items),
      users.size, chunk_size, inputs)
  return rank_metrics(ranks, ks)


def sampled_ranking(score_fn: ScoreFn, users, candidates, *,
                    chunk_size: int = 1024,
                    ks: Sequence[int] = (10,)) -> PerUser:
  """Ranks column 0 of each candidate row against the rest (NCF/SASRec style).

  Entries equal to 0 (padding, e.g. to fill short negative lists) or equal
  to the target id are not counted as competitors.

  Args:
    score_fn: see the module docstring; called with candidates (C, 1 + M).
    users: (U,) int user ids.
    candidates: (U, 1 + M) int item ids, target in column 0 (never 0).
    chunk_size: users per device call.
    ks: cutoffs.

  Returns:
    The same per-user dict as `full_ranking`.
  """
  users = _ids(users, "users")
  candidates = _ids(candidates, "candidates", ndim=2)
  if candidates.shape[0] != users.size:
    raise ValueError(f"candidates has {candidates.shape[0]} rows for "
                     f"{users.size} users")
  _check_range(candidates, 0, np.iinfo(np.int32).max, "candidates")
  _check_range(candidates[:, :1], 1, np.iinfo(np.int32).max, "targets")
  if users.size == 0:
    return rank_metrics(np.zeros(0, np.int32), ks)
  fn = _pytree_fn(score_fn)

  def inputs(lo, hi, size):
    return _pad_rows(users[lo:hi], size), _pad_rows(candidates[lo:hi], size)

  ranks = _map_chunks(lambda u, c: _sampled_chunk(fn, u, c), users.size,
                      chunk_size, inputs)
  return rank_metrics(ranks, ks)


def full_ranking_multi(score_fn: ScoreFn, users, relevant_indptr,
                       relevant_items, exclude_indptr, exclude_items,
                       n_items: int, *, chunk_size: int = 256,
                       ks: Sequence[int] = (10,)) -> PerUser:
  """Recall, Precision, NDCG and MAP at each K over all items 1..n_items.

  For ratio splits with several held-out items per user. Relevant items win
  over exclusions (see `metrics.relevance_in_rank_order`); padding item 0 is
  never relevant and never a competitor.

  Args:
    score_fn: see the module docstring; called with candidates (n_items+1,).
    users: (U,) int user ids.
    relevant_indptr: (U + 1,) CSR row pointers; every row must be non-empty.
    relevant_items: (nnz,) int item ids in [1, n_items].
    exclude_indptr: (U + 1,) CSR row pointers into exclude_items.
    exclude_items: (nnz,) int item ids in [0, n_items].
    n_items: number of real items.
    chunk_size: users per device call.
    ks: cutoffs.

  Returns:
    Per-user (U,) float32 arrays 'Recall@k', 'Precision@k', 'NDCG@k',
    'MAP@k' for each k.
  """
  users = _ids(users, "users")
  ks = tuple(int(k) for k in ks)
  rel_ptr, rel_items, rel_w = _csr(relevant_indptr, relevant_items,
                                   users.size, n_items, "relevant")
  _check_range(rel_items, 1, n_items, "relevant_items")
  if np.any(np.diff(rel_ptr) == 0):
    raise ValueError("every user needs at least one relevant item; drop "
                     "users with an empty held-out set before evaluating")
  ex_ptr, ex_items, ex_w = _csr(exclude_indptr, exclude_items, users.size,
                                n_items, "exclude")
  if users.size == 0:
    return {f"{m}@{k}": np.zeros(0, np.float32) for k in ks
            for m in ("Recall", "Precision", "NDCG", "MAP")}
  fn = _pytree_fn(score_fn)

  def inputs(lo, hi, size):
    return (_pad_rows(users[lo:hi], size),
            _csr_block(rel_ptr, rel_items, lo, hi, size, rel_w),
            _csr_block(ex_ptr, ex_items, lo, hi, size, ex_w))

  return _map_chunks(
      lambda u, r, e: _multi_chunk(fn, u, r, e, n_items=n_items, ks=ks),
      users.size, chunk_size, inputs)
