"""Negative sampling that never returns a user's own positives (but for
`sample_any`, which draws from every item, as Rendle et al.'s MF code does).

Legend: M = samples, U = users, I = n_items, P = positives.

Training negatives are drawn with replacement, fresh each epoch from
`epoch_rng(seed, epoch)`.  Evaluation negatives are distinct per user, drawn
once, saved with a sha256 and reused by every model and epoch
(`frozen_eval_negatives`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path

import numpy as np


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
  """The numpy generator for one (seed, epoch): no global random state."""
  return np.random.default_rng([seed, epoch])


@dataclasses.dataclass(frozen=True)
class PositiveSets:
  """Each user's positive items as CSR with sorted rows.

  Attributes:
    indptr: (n_users + 2,) row u is items[indptr[u]:indptr[u + 1]].
    items: (P,) int32, sorted within each row.
    n_items: items are 1..n_items; id 0 (padding) is never sampled.
  """

  indptr: np.ndarray
  items: np.ndarray
  n_items: int

  @classmethod
  def build(cls, users: np.ndarray, items: np.ndarray, n_users: int,
            n_items: int) -> "PositiveSets":
    keys = np.unique(users.astype(np.int64) * (n_items + 1) + items)
    u, i = np.divmod(keys, n_items + 1)
    indptr = np.zeros(n_users + 2, np.int64)
    np.cumsum(np.bincount(u, minlength=n_users + 1), out=indptr[1:])
    return cls(indptr, i.astype(np.int32), n_items)

  def counts(self) -> np.ndarray:
    """(n_users + 1,) number of positives per user."""
    return np.diff(self.indptr)

  def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(M,) bool: is items[m] a positive of users[m]."""
    keys = self.keys
    query = users.astype(np.int64) * (self.n_items + 1) + items
    pos = np.searchsorted(keys, query)
    return keys[np.minimum(pos, keys.size - 1)] == query if keys.size else (
        np.zeros(query.shape, bool))

  def rows_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positives of `users` as (row index into users, item) pairs."""
    counts = self.counts()[users]
    rows = np.repeat(np.arange(users.size), counts)
    offsets = np.repeat(self.indptr[users] - np.cumsum(counts) + counts,
                        counts)
    return rows, self.items[offsets + np.arange(counts.sum())]

  @functools.cached_property
  def keys(self) -> np.ndarray:
    """(P,) sorted user * (n_items + 1) + item, computed once."""
    users = np.repeat(np.arange(self.indptr.size - 1), self.counts())
    return users * (self.n_items + 1) + self.items


def _check_room(pos: PositiveSets, users: np.ndarray) -> None:
  full = pos.counts()[users] >= pos.n_items
  if full.any():
    raise ValueError(f"user {users[full][0]} has interacted with all "
                     f"{pos.n_items} items: no negative exists")


def sample_uniform(users: np.ndarray, pos: PositiveSets,
                   rng: np.random.Generator) -> np.ndarray:
  """(M,) int32 items drawn uniformly from each user's non-positives.

  Exact and loop-free: draw r, the rank among the user's free items, then
  shift it past the positives.  With the user's sorted positives p_j, the
  number of free items below p_j is p_j - 1 - j, so the r-th free item is
  1 + r + #{j : p_j - 1 - j <= r}, found by one global searchsorted.
  """
  users = np.asarray(users)
  _check_room(pos, users)
  n_free = pos.n_items - pos.counts()[users]
  r = (rng.random(users.shape) * n_free).astype(np.int64)
  r = np.minimum(r, n_free - 1)  # guards the float rounding edge
  row = np.repeat(np.arange(pos.indptr.size - 1), pos.counts())
  within = np.arange(pos.items.size) - pos.indptr[row]
  base = np.int64(pos.n_items + 1)
  free_below = row * base + (pos.items - 1 - within)
  n_shift = (np.searchsorted(free_below, users * base + r, side="right")
             - pos.indptr[users])
  return (1 + r + n_shift).astype(np.int32)


def sample_any(users: np.ndarray, n_items: int,
               rng: np.random.Generator) -> np.ndarray:
  """(M,) int32 items drawn uniformly from all of 1..n_items, a user's own
  positives included: the training sampler of Rendle, Krichene, Zhang &
  Anderson (RecSys 2020, their released mf_simple.py), where a sampled
  positive is labelled negative."""
  if n_items < 1:
    raise ValueError(f"n_items must be >= 1, got {n_items}")
  return rng.integers(1, n_items + 1, size=np.shape(users), dtype=np.int32)


def sample_weighted(users: np.ndarray, pos: PositiveSets, weights: np.ndarray,
                    rng: np.random.Generator, max_rounds: int = 100
                    ) -> np.ndarray:
  """(M,) int32 items drawn with probability proportional to `weights`
  (n_items + 1,), restricted to each user's non-positives.

  Rejection sampling: each round redraws only the rejected rows, so the
  work is vectorised and shrinks geometrically.
  """
  users = np.asarray(users)
  _check_room(pos, users)
  w = np.asarray(weights, np.float64).copy()
  w[0] = 0.0
  cdf = np.cumsum(w) / w.sum()
  out = np.empty(users.shape, np.int32)
  todo = np.arange(users.size)
  for _ in range(max_rounds):
    draw = np.searchsorted(cdf, rng.random(todo.size), side="right")
    draw = np.minimum(draw, pos.n_items).astype(np.int32)
    bad = pos.contains(users[todo], draw)
    out[todo] = draw
    todo = todo[bad]
    if not todo.size:
      return out
  raise RuntimeError(f"{todo.size} negatives still collide with positives "
                     f"after {max_rounds} rounds: weights too concentrated")


def distinct_negatives(users: np.ndarray, pos: PositiveSets, n: int,
                       rng: np.random.Generator,
                       weights: np.ndarray | None = None,
                       block: int = 1 << 22) -> np.ndarray:
  """(U, n) int32: n distinct non-positive items per user, each row sorted.

  Uniform when `weights` is None, else without-replacement sampling
  proportional to weights (Gumbel top-n).  Users are processed in blocks so
  memory is O(block), not O(U * n_items).
  """
  users = np.asarray(users)
  free = pos.n_items - pos.counts()[users]
  if users.size and free.min() < n:
    raise ValueError(f"user {users[free.argmin()]} has only {free.min()} "
                     f"non-positive items; {n} negatives were asked for")
  logw = np.zeros(pos.n_items + 1) if weights is None else np.log(
      np.maximum(np.asarray(weights, np.float64), 1e-300))
  logw[0] = -np.inf
  out = np.empty((users.size, n), np.int32)
  step = max(1, block // (pos.n_items + 1))
  for s in range(0, users.size, step):
    u = users[s:s + step]
    keys = logw + rng.gumbel(size=(u.size, pos.n_items + 1))
    rows, cols = pos.rows_of(u)
    keys[rows, cols] = -np.inf
    top = np.argpartition(-keys, n - 1, axis=1)[:, :n]
    # Sorted: argpartition's order differs between numpy builds and CPUs
    # (SIMD selection), and a frozen file's sha256 must not.
    out[s:s + step] = np.sort(top, axis=1)
  return out


def frozen_eval_negatives(path: str | os.PathLike, draw) -> tuple[dict, str]:
  """Loads evaluation negatives from `path`, or draws and saves them.

  Args:
    path: an .npz file; its name should identify dataset, split and protocol.
    draw: a function `() -> dict[str, np.ndarray]` called only when the file
      does not exist.

  Returns:
    (arrays, sha256 hex digest of their bytes).  A file whose stored digest
    does not match its content raises ValueError naming the file.
  """
  path = Path(path)
  if path.exists():
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files if k != "sha256"}
      stored = str(f["sha256"]) if "sha256" in f.files else None
    digest = _digest(arrays)
    if stored != digest:
      raise ValueError(f"{path}: content sha256 {digest} does not match the "
                       f"stored {stored}; expected an intact negatives file "
                       "(delete it to redraw)")
    return arrays, digest
  arrays = draw()
  digest = _digest(arrays)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, sha256=np.array(digest), **arrays)
  os.replace(tmp, path)  # atomic: readers never see a half-written file
  return arrays, digest


def _digest(arrays: dict) -> str:
  h = hashlib.sha256()
  for k in sorted(arrays):
    h.update(k.encode())
    h.update(np.ascontiguousarray(arrays[k]).tobytes())
  return h.hexdigest()
