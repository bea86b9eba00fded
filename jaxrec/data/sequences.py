"""Item sequences: SASRec-format files, k-core filtering, leave-one-out and
fixed-length left-padded inputs.

Legend: E = interactions, U = users, L = max_len (input width).

A sequence log is an `Interactions` whose `timestamps` order each user's
actions. SASRec-format files (`user item` per line, each user's lines in time
order) carry no times, so the loader stores each line's 0-based position as
its timestamp; MovieLens-100k (and ML-1M from `ratings.dat`) carry real
times, with ties broken by file order. Every split goes through
`jaxrec.data.splits`, so it is leak-checked like every other split.
Id 0 is padding everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from absl import logging

from jaxrec.data import movielens, negatives, splits, textio
from jaxrec.data.download import default_data_dir
from jaxrec.data.errors import DataFormatError
from jaxrec.data.interactions import Interactions

# name -> path under the data root of the SASRec-format copies (data README).
FILES = {"games": "sasrec/Video.txt", "beauty": "bert4rec/beauty.txt"}
NAMES = tuple(FILES) + ("ml-100k", "ml-1m")
_MAX_ID = np.iinfo(np.int32).max


def load_sasrec(path: str | os.PathLike, name: str | None = None
                ) -> Interactions:
  """Reads a SASRec-format file: one `user item` pair per line, every user's
  lines in time order (users may interleave).

  Ids must be positive integers; n_users and n_items are the largest ids, as
  in SASRec's `data_partition`. `timestamps` holds each line's 0-based
  position, which orders each user's actions exactly as the file does.

  Raises:
    DataFormatError naming the file, the line and what was expected.
  """
  path = Path(path)
  cols = textio.read_numeric(path, " ", ("user", "item"))
  for field in ("user", "item"):
    bad = np.flatnonzero((cols[field] < 1) | (cols[field] > _MAX_ID))
    if bad.size:
      raise DataFormatError(path, int(bad[0]) + 1,
                            f"{field} id {cols[field][bad[0]]}",
                            f"a {field} id in [1, {_MAX_ID}] (0 is padding)")
  return Interactions(
      users=cols["user"].astype(np.int32), items=cols["item"].astype(np.int32),
      n_users=int(cols["user"].max()), n_items=int(cols["item"].max()),
      timestamps=np.arange(cols["user"].size, dtype=np.int64),
      name=name or path.stem.lower())


def load(name: str, data_dir: str | os.PathLike | None = None, *,
         k_core_min: int = 0, download: bool = False) -> Interactions:
  """One of NAMES as a time-ordered log, optionally k-core filtered.

  'games' is SASRec's "Games" (`sasrec/Video.txt`), 'beauty' BERT4Rec's
  "Beauty" (`bert4rec/beauty.txt`); both are already filtered by their
  authors, so their papers' statistics hold with `k_core_min=0`.
  'ml-100k' and 'ml-1m' come from the MovieLens loaders (ML-1M needs the
  original `ratings.dat` for its timestamps).
  """
  root = Path(data_dir or default_data_dir())
  if name in FILES:
    data = load_sasrec(root / FILES[name], name)
  elif name == "ml-100k":
    data = movielens.load_ml100k(root, download=download)
  elif name == "ml-1m":
    data = movielens.load_ml1m(root, download=download)
  else:
    raise ValueError(f"unknown sequence dataset {name!r}; expected one of "
                     f"{NAMES}")
  return k_core(data, k_core_min) if k_core_min > 1 else data


def k_core(data: Interactions, k: int) -> Interactions:
  """Drops users and items with fewer than `k` interactions, repeatedly,
  until every remaining user and item has at least `k`; then renumbers both
  1..n in order of their old ids (`item_raw_ids` maps back)."""
  keep = np.ones(len(data), bool)
  while True:
    users, items = data.users[keep], data.items[keep]
    small_u = np.bincount(users, minlength=data.n_users + 1) < k
    small_i = np.bincount(items, minlength=data.n_items + 1) < k
    drop = small_u[users] | small_i[items]
    if not drop.any():
      break
    keep[np.flatnonzero(keep)[drop]] = False
  kept = data.select(keep)
  if not len(kept):
    raise ValueError(f"{data.name}: nothing survives a {k}-core filter")
  raw_u, users = np.unique(kept.users, return_inverse=True)
  raw_i, items = np.unique(kept.items, return_inverse=True)
  old = (data.item_raw_ids[raw_i] if data.item_raw_ids is not None
         else raw_i.astype(np.int64))
  return dataclasses.replace(
      kept, users=(users + 1).astype(np.int32),
      items=(items + 1).astype(np.int32), n_users=int(raw_u.size),
      n_items=int(raw_i.size), item_raw_ids=np.r_[-1, old].astype(np.int64))


def leave_one_out(data: Interactions) -> splits.Split:
  """SPEC §2 leave-one-out by time: each user's last action is the test
  item, the second-to-last the validation item, the rest train; users with
  fewer than 3 actions stay in train only (`Split.n_dropped_users`).

  Repeated (user, item) pairs are collapsed to their latest occurrence
  first, as `splits.leave_one_out` does for every log (neither Games nor
  Beauty has any). The split is leak-checked, including time order.
  """
  if data.timestamps is None:
    raise ValueError(f"{data.name}: sequences need an order; this copy has "
                     "no timestamps (ML-1M needs the original ratings.dat)")
  return splits.leave_one_out(data, by="time")


@dataclasses.dataclass(frozen=True)
class UserSequences:
  """Each user's items in time order, as CSR.

  Attributes:
    indptr: (n_users + 2,) int64; user u's items are
      items[indptr[u]:indptr[u + 1]] (row 0, padding, is empty).
    items: (E,) int32.
  """

  indptr: np.ndarray
  items: np.ndarray

  @property
  def n_users(self) -> int:
    return self.indptr.size - 2

  def lengths(self) -> np.ndarray:
    """(n_users + 1,) int64 sequence length per user id."""
    return np.diff(self.indptr)


def user_sequences(*parts: Interactions) -> UserSequences:
  """The union of `parts` (one id space) as time-ordered sequences; ties in
  time keep the order of `parts`, then file order."""
  users = np.concatenate([p.users for p in parts])
  items = np.concatenate([p.items for p in parts])
  times = np.concatenate([p.timestamps for p in parts])
  order = np.lexsort((np.arange(users.size), times, users))
  indptr = np.zeros(parts[0].n_users + 2, np.int64)
  np.cumsum(np.bincount(users, minlength=parts[0].n_users + 1),
            out=indptr[1:])
  return UserSequences(indptr, items[order].astype(np.int32))


def left_pad(seqs: UserSequences, users: np.ndarray, width: int
             ) -> np.ndarray:
  """(U, width) int32: each user's last `width` items, right-aligned, with
  id 0 filling the left."""
  users = np.asarray(users)
  ends = seqs.indptr[users + 1]
  lens = np.minimum(ends - seqs.indptr[users], width)
  cols = width - lens
  rows = np.repeat(np.arange(users.size), lens)
  offset = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
  out = np.zeros((users.size, width), np.int32)
  out[rows, np.repeat(cols, lens) + offset] = seqs.items[
      np.repeat(ends - lens, lens) + offset]
  return out


def eval_inputs(split: splits.Split, max_len: int
                ) -> dict[str, np.ndarray]:
  """Model inputs per role, indexed by user id (row 0 is all padding).

  'valid': (n_users + 1, max_len) the train sequence; 'test': the train
  sequence followed by the validation item (SASRec protocol: at test time
  the input includes the validation item).
  """
  everyone = np.arange(split.train.n_users + 1)
  return {
      "valid": left_pad(user_sequences(split.train), everyone, max_len),
      "test": left_pad(user_sequences(split.train, split.valid), everyone,
                       max_len)}


def statistics(data: Interactions) -> dict[str, float]:
  """Users, items and actions actually present, and mean actions per user
  and per item, to check a copy against its paper's table."""
  users = np.unique(data.users).size
  items = np.unique(data.items).size
  return {"users": users, "items": items, "actions": len(data),
          "per_user": len(data) / users, "per_item": len(data) / items}



def pack(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
  """Next-fit packing of sequences, in the given order, into rows of
  `width` tokens: (row, start column) per sequence, each (U,) int64."""
  lengths = np.asarray(lengths, np.int64)
  if lengths.size and (lengths.min() < 1 or lengths.max() > width):
    raise ValueError(f"sequence lengths must lie in [1, {width}]")
  ends = np.cumsum(lengths)
  row, start = np.empty_like(lengths), np.empty_like(lengths)
  first, base, r = 0, 0, 0
  while first < lengths.size:  # one iteration per row, not per sequence
    stop = int(np.searchsorted(ends, base + width, side="right"))
    row[first:stop] = r
    start[first:stop] = ends[first:stop] - lengths[first:stop] - base
    base, first, r = int(ends[stop - 1]), stop, r + 1
  return row, start


@dataclasses.dataclass(frozen=True)
class Packing:
  """Every token of an epoch's packed batch grid (S, R, W): sequences of
  several users share a row, each attending only within its own segment.

  Attributes:
    step, row, col: (T,) where token goes in the (S, R, W) grid.
    user: (T,) its user; t: (T,) its index in the segment; length: (T,)
      its segment's length k; segment: (T,) segment id (>= 1, 0 = padding).
    shape: (S, R, W).
    dropped: users that did not fit into S * R rows (trained next epoch).
  """

  step: np.ndarray
  row: np.ndarray
  col: np.ndarray
  user: np.ndarray
  t: np.ndarray
  length: np.ndarray
  segment: np.ndarray
  shape: tuple[int, int, int]
  dropped: int

  def grid(self, values: np.ndarray, dtype=np.int32) -> np.ndarray:
    """(S, R, W) array holding `values` (T,) at the tokens, 0 elsewhere."""
    out = np.zeros(self.shape, dtype)
    out[self.step, self.row, self.col] = values
    return out

  def positions(self, max_len: int) -> np.ndarray:
    """(S, R, W) right-aligned position ids (see
    `layers.right_aligned_positions`): each segment's last token is
    max_len - 1."""
    return self.grid(max_len - self.length + self.t)


def packed_epoch(users: np.ndarray, lengths: np.ndarray, width: int,
                 steps: int, rows_per_step: int,
                 rng: np.random.Generator) -> Packing:
  """Shuffles `users` (with segment lengths `lengths` (n_users + 1,), each in
  [1, width]) and packs them into S = `steps` batches of R =
  `rows_per_step` rows of `width` tokens. Rows left empty repeat the first
  rows (as a wrapped last batch would); users beyond S * R rows are dropped
  for this epoch and counted."""
  order = rng.permutation(np.asarray(users))
  k = lengths[order]
  row, start = pack(k, width)
  n_rows, capacity = int(row[-1]) + 1, steps * rows_per_step
  fits = row < capacity
  order, k, row, start = order[fits], k[fits], row[fits], start[fits]
  # Rows n_rows.. repeat rows 0.. so that the grid is full.
  copies = -(-capacity // min(n_rows, capacity))
  seq_idx = np.arange(order.size)
  row = np.concatenate([row + c * n_rows for c in range(copies)])
  keep = row < capacity
  seq_idx = np.tile(seq_idx, copies)[keep]
  row = row[keep]
  k, start, order = k[seq_idx], start[seq_idx], order[seq_idx]
  t = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
  row_tok = np.repeat(row, k)
  return Packing(
      step=row_tok // rows_per_step, row=row_tok % rows_per_step,
      col=np.repeat(start, k) + t, user=np.repeat(order, k), t=t,
      length=np.repeat(k, k), segment=np.repeat(np.arange(k.size) + 1, k),
      shape=(steps, rows_per_step, width), dropped=int((~fits).sum()))


def rows_needed(lengths: np.ndarray, users: np.ndarray, width: int,
                seed: int = 0, draws: int = 3) -> int:
  """The most rows next-fit packing needed over a few seeded shuffles."""
  rng = np.random.default_rng(seed)
  return max(int(pack(lengths[rng.permutation(users)], width)[0][-1]) + 1
             for _ in range(draws))


def next_item_batches(table: np.ndarray, packing: Packing,
                      positives: negatives.PositiveSets,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
  """SASRec training batches, packed.

  Args:
    table: (n_users + 1, L + 1) each user's last L + 1 training items,
      left-padded (`left_pad`); a user's segment is its k = (real items - 1)
      inputs, each followed by its target.
    packing: from `packed_epoch` with lengths k.
    positives: the users' training items; negatives are never among them.

  Returns:
    (S, R, W) int32 arrays: 'seq' inputs; 'pos' the next item after each
    input (0 at padding); 'neg' one uniform non-positive per target (0 at
    padding); 'segment' ids; 'position' right-aligned position ids.
  """
  p, width = packing, table.shape[1] - 1
  col = width - p.length + p.t                 # the input's column in table
  neg = negatives.sample_uniform(p.user, positives, rng)
  return {"seq": p.grid(table[p.user, col]),
          "pos": p.grid(table[p.user, col + 1]),
          "neg": p.grid(neg), "segment": p.grid(p.segment),
          "position": p.positions(width)}


def mask_counts(lengths: np.ndarray, last_only: np.ndarray,
                mask_prob: float) -> np.ndarray:
  """Masks per segment of `lengths` items (BERT4Rec's rule): max(1,
  round(rho * k)), or 1 where `last_only` (the mask-last samples)."""
  return np.where(last_only, 1, np.maximum(1, np.rint(mask_prob * lengths)))


def masked_item_batches(table: np.ndarray, packing: Packing,
                        rng: np.random.Generator, *, mask_prob: float,
                        mask_id: int, mask_last_share: float, budget: int
                        ) -> dict[str, np.ndarray]:
  """BERT4Rec training batches (cloze task), packed.

  Each segment masks max(1, round(rho * k)) of its k items at random
  (BERT4Rec's rule), except that a `mask_last_share` of segments mask only
  their last item (the paper's samples that match the test task). A batch
  predicts at most `budget` positions; masks beyond it are undone at random
  (the item stays visible), so the softmax has a fixed size M.

  Args:
    table: (n_users + 1, L) left-padded training sequences.
    packing: from `packed_epoch` with lengths min(length, L).

  Returns:
    'seq', 'segment', 'position' (S, R, W) as in `next_item_batches`, with
    [mask] ids in 'seq'; 'positions' (S, M) flat index r * W + w of each
    masked token; 'labels' (S, M) the hidden items; 'weights' (S, M) 1.0,
    or 0.0 on unused slots.
  """
  p, width = packing, table.shape[1]
  items = table[p.user, width - p.length + p.t]
  last_only = (rng.random(p.segment.max() + 1) < mask_last_share)[p.segment]
  n_mask = mask_counts(p.length, last_only, mask_prob)
  key = np.where(last_only & (p.t == p.length - 1), -1.0,
                 rng.random(p.t.size))
  order = np.lexsort((key, p.segment))
  rank = np.empty_like(order)
  rank[order] = p.t[np.lexsort((p.t, p.segment))]  # index within segment
  masked = rank < n_mask
  # At most `budget` masks per step: a random order decides who keeps one.
  slot = np.lexsort((rng.random(p.t.size), ~masked, p.step))
  within = np.arange(slot.size) - np.searchsorted(p.step[slot], p.step[slot])
  over = slot[within >= budget]
  if masked[over].any():
    logging.info("%d of %d masks undone: over the budget of %d per step",
                 np.count_nonzero(masked[over]), np.count_nonzero(masked),
                 budget)
  masked[over] = False
  steps, rows, _ = p.shape
  flat = (p.row * width + p.col)[masked]
  step_m = p.step[masked]
  by = np.lexsort((flat, step_m))
  col_m = np.arange(by.size) - np.searchsorted(step_m[by], step_m[by])
  grid = lambda v, dtype: _scatter((steps, budget), step_m[by], col_m,
                                   v[by], dtype)
  return {"seq": p.grid(np.where(masked, mask_id, items)),
          "segment": p.grid(p.segment), "position": p.positions(width),
          "positions": grid(flat, np.int32),
          "labels": grid(items[masked], np.int32),
          "weights": grid(np.ones(flat.size), np.float32)}


def _scatter(shape, rows, cols, values, dtype) -> np.ndarray:
  out = np.zeros(shape, dtype)
  out[rows, cols] = values
  return out
