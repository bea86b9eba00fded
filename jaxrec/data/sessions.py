"""Session logs for session-based recommendation (GRU4Rec protocol).

Legend: E = events, N = sessions, S = steps of a schedule, B = batch rows.

A log is tab-separated `SessionId ItemId Time` with that header (the format
of GRU4Rec and session-rec; `shared/data/session/`).  The pipeline follows
the official GRU4Rec preprocessing (Hidasi et al., ICLR 2016): optional
removal of consecutive repeats of an item within a session, item support and
session length filters, a split by time (the sessions that end in the last
day are the test set), then test items restricted to the training items and
test sessions of length < 2 dropped.  Items are re-indexed 1..n_items in
order of first appearance in training; id 0 is padding.

Session-parallel mini-batches (`session_parallel`): each of B rows follows
one session; when it ends the next session (in order of start time, as the
official code) takes that row, whose hidden state is then reset.  Rows left
without a session at the end of an epoch are marked invalid rather than
dropped (the official code shrinks the batch), so every step has shape B.
"""

from __future__ import annotations

import dataclasses
import heapq
import io
from pathlib import Path

import numpy as np

from jaxrec.data import textio

HEADER = "SessionId\tItemId\tTime"
_NAMES = ("SessionId", "ItemId", "Time")
DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class Events:
  """A raw event log, one entry per click (original ids)."""

  session: np.ndarray  # (E,) int64
  item: np.ndarray     # (E,) int64
  time: np.ndarray     # (E,) float64

  def __len__(self) -> int:
    return self.session.size

  def select(self, mask_or_index: np.ndarray) -> Events:
    return Events(self.session[mask_or_index], self.item[mask_or_index],
                  self.time[mask_or_index])


@dataclasses.dataclass(frozen=True)
class Sessions:
  """Indexed sessions, contiguous, each in time order.

  Attributes:
    items: (E,) int32 item ids in 1..n_items.
    offsets: (N + 1,) int64; session s is items[offsets[s]:offsets[s + 1]].
    n_items: size of the item index (id 0 is padding).
  """

  items: np.ndarray
  offsets: np.ndarray
  n_items: int

  @property
  def n_sessions(self) -> int:
    return self.offsets.size - 1

  @property
  def n_events(self) -> int:
    return self.items.size

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)


def read_events(path: str | Path) -> Events:
  """Reads a `SessionId<TAB>ItemId<TAB>Time` file with its header line.

  Raises:
    DataFormatError: naming the file, the line and what was expected.
  """
  path = Path(path)
  body, _ = textio.read_text(path, "ascii", "\t", _NAMES, header=HEADER)
  dtype = [("session", np.int64), ("item", np.int64), ("time", np.float64)]
  try:
    table = np.loadtxt(io.StringIO(body), delimiter="\t", dtype=dtype,
                       comments=None, ndmin=1)
  except (ValueError, OverflowError):
    table = None
  if table is None or table.size != body.count("\n") + 1:
    return _scan(path, body)
  return Events(table["session"], table["item"], table["time"])


def _scan(path: Path, body: str) -> Events:
  """Slow exact parse that raises for the first malformed line."""
  rows = textio.split_fields(path, body, "\t", _NAMES, first_line=2)
  cols = ([], [], [])
  for i, (s, it, t) in enumerate(rows, 2):
    cols[0].append(textio.number(path, i, "SessionId", s, int, -2**63,
                                 2**63 - 1))
    cols[1].append(textio.number(path, i, "ItemId", it, int, -2**63,
                                 2**63 - 1))
    cols[2].append(textio.number(path, i, "Time", t, float))
  return Events(np.asarray(cols[0], np.int64), np.asarray(cols[1], np.int64),
                np.asarray(cols[2], np.float64))


def sort_events(events: Events) -> Events:
  """Sorted by (session, time); file order breaks ties."""
  order = np.lexsort((np.arange(len(events)), events.time, events.session))
  return events.select(order)


def _boundaries(session: np.ndarray) -> np.ndarray:
  """(E,) True where a new session starts (input sorted by session)."""
  return np.r_[True, session[1:] != session[:-1]][:session.size]


def remove_consecutive_repeats(events: Events) -> Events:
  """Drops a click on the same item as the click before it in the session."""
  ev = sort_events(events)
  repeat = ~_boundaries(ev.session) & np.r_[False, ev.item[1:] == ev.item[:-1]]
  return ev.select(~repeat)


def _session_sizes(session: np.ndarray) -> np.ndarray:
  """(E,) the size of each event's session."""
  _, inverse, counts = np.unique(session, return_inverse=True,
                                 return_counts=True)
  return counts[inverse]


def filter_frequency(events: Events, min_item_support: int = 5,
                     min_session_length: int = 2) -> Events:
  """GRU4Rec's filters: short sessions, then rare items, then short again."""
  ev = events.select(_session_sizes(events.session) >= min_session_length)
  _, inverse, counts = np.unique(ev.item, return_inverse=True,
                                 return_counts=True)
  ev = ev.select(counts[inverse] >= min_item_support)
  return ev.select(_session_sizes(ev.session) >= min_session_length)


def time_split(events: Events, test_seconds: float = DAY
               ) -> tuple[Events, Events]:
  """(train, test): test holds the sessions that end in the last
  `test_seconds` of the log; no session is split between the two."""
  _, inverse = np.unique(events.session, return_inverse=True)
  end = np.full(inverse.max() + 1, -np.inf)
  np.maximum.at(end, inverse, events.time)
  in_test = end[inverse] >= events.time.max() - test_seconds
  return events.select(~in_test), events.select(in_test)


@dataclasses.dataclass(frozen=True)
class ItemIndex:
  """Original item ids -> 1..n_items (order of first appearance)."""

  raw_ids: np.ndarray  # (n_items,) int64; raw_ids[i - 1] is item i

  @classmethod
  def build(cls, events: Events) -> ItemIndex:
    ev = sort_events(events)
    uniq, first = np.unique(ev.item, return_index=True)
    return cls(uniq[np.argsort(first, kind="stable")])

  @property
  def n_items(self) -> int:
    return self.raw_ids.size

  def lookup(self, raw: np.ndarray) -> np.ndarray:
    """(E,) int32 ids in 1..n_items, 0 for unknown items."""
    order = np.argsort(self.raw_ids, kind="stable")
    sorted_ids = self.raw_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, raw), 0, sorted_ids.size - 1)
    found = sorted_ids[pos] == raw
    return np.where(found, order[pos] + 1, 0).astype(np.int32)


def index_sessions(events: Events, index: ItemIndex,
                   min_session_length: int = 2) -> Sessions:
  """Drops unknown items, then sessions shorter than `min_session_length`;
  orders sessions by start time (session id breaks ties)."""
  ev = sort_events(events)
  ids = index.lookup(ev.item)
  ev, ids = ev.select(ids > 0), ids[ids > 0]
  keep = _session_sizes(ev.session) >= min_session_length
  ev, ids = ev.select(keep), ids[keep]
  starts = np.flatnonzero(_boundaries(ev.session))
  sizes = np.diff(np.r_[starts, len(ev)])
  order = np.lexsort((ev.session[starts], ev.time[starts]))
  offsets = np.r_[0, np.cumsum(sizes[order])].astype(np.int64)
  gather = (np.repeat(starts[order] - offsets[:-1], sizes[order])
            + np.arange(offsets[-1]))
  return Sessions(ids[gather], offsets, index.n_items)


def item_counts(sessions: Sessions) -> np.ndarray:
  """(n_items + 1,) events per item; entry 0 (padding) is 0."""
  return np.bincount(sessions.items, minlength=sessions.n_items + 1)


def session_parallel(sessions: Sessions, batch_size: int,
                     order: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """The session-parallel schedule of one pass over `sessions`.

  Rows are assigned greedily, as in the official GRU4Rec iterator: the next
  session in `order` goes to the row that frees first, lower rows first on
  ties.  That assignment is inherently sequential (one heap operation per
  session); the (S, B) arrays are then filled with vectorised numpy.

  Args:
    sessions: sessions of length >= 2.
    batch_size: B rows.
    order: (N,) session order; default = as stored (by start time).

  Returns:
    'inputs', 'targets': (S, B) int32 item ids (0 in invalid slots);
    'reset': (S, B) bool, True where a row starts a session (its hidden
      state must be zeroed before the step; invalid slots are reset too);
    'valid': (S, B) bool, False where a row has no session left;
    'last': (S, B) bool, True at the last (input, target) pair of a session;
    'session': (S, B) int32 session index, -1 in invalid slots.
  """
  lengths = sessions.lengths() - 1  # (input, target) pairs per session
  if lengths.size and lengths.min() < 1:
    raise ValueError("session_parallel needs sessions of length >= 2")
  order = np.arange(sessions.n_sessions) if order is None else order
  start = np.zeros(sessions.n_sessions, np.int64)
  row = np.zeros(sessions.n_sessions, np.int64)
  free = [(0, b) for b in range(batch_size)]  # (free from step, row)
  for s in order:
    t, b = heapq.heappop(free)
    start[s], row[s] = t, b
    heapq.heappush(free, (t + int(lengths[s]), b))
  n_steps = int((start + lengths).max()) if lengths.size else 0
  # One entry per (input, target) pair, session by session.
  sess = np.repeat(np.arange(sessions.n_sessions), lengths)
  k = np.arange(sess.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  src = sessions.offsets[sess] + k
  step, rows = start[sess] + k, row[sess]
  shape = (n_steps, batch_size)
  out = {"inputs": np.zeros(shape, np.int32),
         "targets": np.zeros(shape, np.int32),
         "reset": np.ones(shape, bool), "valid": np.zeros(shape, bool),
         "last": np.zeros(shape, bool),
         "session": np.full(shape, -1, np.int32)}
  out["inputs"][step, rows] = sessions.items[src]
  out["targets"][step, rows] = sessions.items[src + 1]
  out["reset"][step, rows] = k == 0
  out["valid"][step, rows] = True
  out["last"][step, rows] = k == lengths[sess] - 1
  out["session"][step, rows] = sess
  return out


@dataclasses.dataclass(frozen=True)
class SessionSplit:
  """Indexed sessions of one prepared split (all on `index`).

  Attributes:
    train: the training sessions (`_train_tr`).
    valid: validation (`_train_valid`, the day after train).
    test: test (`_test`, the day after valid).
    full: train + valid (`_train_full`) for a refit, else None.
  """

  train: Sessions
  valid: Sessions
  test: Sessions
  index: ItemIndex
  stats: dict
  full: Sessions | None = None


def prepare(fit_on: Events, logs: dict[str, Events], *,
            dedupe: bool = True) -> tuple[dict[str, Sessions], ItemIndex]:
  """Indexes every log on the items of `fit_on` (the training log)."""
  if dedupe:
    fit_on = remove_consecutive_repeats(fit_on)
    logs = {k: remove_consecutive_repeats(v) for k, v in logs.items()}
  index = ItemIndex.build(fit_on)
  return {k: index_sessions(v, index) for k, v in logs.items()}, index


def load_prepared(data_dir: str | Path, name: str, *, dedupe: bool = True,
                  refit: bool = False) -> SessionSplit:
  """A session-rec prepared split under `<data_dir>/session/<name>/`:
  `<name>_train_tr.txt` (train), `_train_valid.txt` (validation, the last
  day of `_train_full.txt`) and `_test.txt` (the day after).

  Items are indexed on train, or with `refit` on train_full (then `full`
  holds it, and validation items unseen in train_tr stay in the index), and
  evaluation sessions keep only indexed items.
  """
  root = Path(data_dir) / "session" / name
  if not root.is_dir() and (Path(data_dir) / name).is_dir():
    root = Path(data_dir) / name
  files = {k: root / f"{name}_{k}.txt"
           for k in ("train_tr", "train_valid", "train_full", "test")}
  missing = [str(p) for p in files.values() if not p.exists()]
  if missing:
    raise FileNotFoundError(f"session data not found: {', '.join(missing)} "
                            "(set --config.data.dir or $JAXREC_DATA_DIR)")
  logs = {"train": read_events(files["train_tr"]),
          "valid": read_events(files["train_valid"]),
          "test": read_events(files["test"])}
  if refit:
    logs["full"] = read_events(files["train_full"])
  parts, index = prepare(logs["full" if refit else "train"], logs,
                         dedupe=dedupe)
  stats = {f"{k}_{q}": getattr(v, q) for k, v in parts.items()
           for q in ("n_sessions", "n_events")}
  stats["n_items"] = index.n_items
  return SessionSplit(parts["train"], parts["valid"], parts["test"], index,
                      stats, parts.get("full"))
