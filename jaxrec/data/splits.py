"""Train / validation / test splits, each checked for leakage.

Legend: E = interactions, U = users.

Every split function returns a `Split` and has already run
`assert_no_leakage` on it.  Duplicate (user, item) pairs are collapsed to
their latest occurrence first: with repeats, "the test item" could also sit
in train, which is leakage by construction.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from jaxrec.data import interactions
from jaxrec.data.interactions import Interactions


@dataclasses.dataclass(frozen=True)
class Split:
  """A split of one log into train, validation and test.

  Attributes:
    train, valid, test: disjoint interaction sets.
    protocol: 'loo-time', 'loo-random' or 'ratio'.
    n_dropped_users: users with too few interactions to evaluate (they stay
      in train and are not in valid or test).
  """

  train: Interactions
  valid: Interactions
  test: Interactions
  protocol: str
  n_dropped_users: int = 0

  def fingerprint(self) -> str:
    """12 hex digits identifying the exact split (for cache file names)."""
    h = hashlib.sha256(self.protocol.encode())
    for part in (self.train, self.valid, self.test):
      h.update(np.ascontiguousarray(part.users, np.int32).tobytes())
      h.update(np.ascontiguousarray(part.items, np.int32).tobytes())
    return h.hexdigest()[:12]

  def valid_in_train(self) -> "Split":
    """This split with validation folded into train and valid left empty
    (a refit's data: the epoch count chosen on validation, then train on
    both and read test once); leak-checked, so test stays unseen."""
    merged = dataclasses.replace(
        self, train=interactions.concat(self.train, self.valid),
        valid=self.valid.select(np.zeros(len(self.valid), bool)))
    assert_no_leakage(merged)
    return merged


def _order(data: Interactions, by: str, seed: int) -> np.ndarray:
  """(E,) positions sorted by user, then by time (file order breaks ties) or
  by a seeded random key."""
  position = np.arange(len(data))
  if by == "time":
    if data.timestamps is None:
      raise ValueError(
          f"{data.name}: a time-based split needs timestamps, and this copy "
          "has none; use a random split or the original ratings file")
    return np.lexsort((position, data.timestamps, data.users))
  if by == "random":
    key = np.random.default_rng(seed).random(len(data))
    return np.lexsort((key, data.users))
  raise ValueError(f"unknown order {by!r}; expected 'time' or 'random'")


def _rank_within_user(users_sorted: np.ndarray) -> tuple[np.ndarray, ...]:
  """For users sorted ascending: (position within user, count of that user)."""
  starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
  counts = np.diff(np.r_[starts, users_sorted.size])
  pos = np.arange(users_sorted.size) - np.repeat(starts, counts)
  return pos, np.repeat(counts, counts)


def dedupe_latest(data: Interactions) -> Interactions:
  """Keeps one row per (user, item): the latest by time, else by file order."""
  times = data.timestamps if data.timestamps is not None else np.zeros(len(data))
  order = np.lexsort((np.arange(len(data)), times, data.items, data.users))
  u, i = data.users[order], data.items[order]
  last = np.r_[(u[1:] != u[:-1]) | (i[1:] != i[:-1]), True]
  if last.all():
    return data
  return data.select(np.sort(order[last]))


def leave_one_out(data: Interactions, *, by: str = "time",
                  seed: int = 0, min_interactions: int = 3) -> Split:
  """SPEC §2 leave-one-out: per user, last = test, second-to-last = valid.

  Args:
    data: the log.
    by: 'time' (timestamp, ties by file order) or 'random' (seeded order).
    seed: seed of the random order.
    min_interactions: users with fewer interactions are kept in train only.
  """
  data = dedupe_latest(data)
  order = _order(data, by, seed)
  pos, count = _rank_within_user(data.users[order])
  evaluated = count >= min_interactions
  test = order[evaluated & (pos == count - 1)]
  valid = order[evaluated & (pos == count - 2)]
  train = order[~evaluated | (pos < count - 2)]
  n_dropped = int(np.unique(data.users[order[~evaluated]]).size)
  split = Split(data.select(np.sort(train)), data.select(valid),
                data.select(test), f"loo-{by}", n_dropped)
  assert_no_leakage(split)
  return split


def ratio_split(data: Interactions, *, test_ratio: float = 0.2,
                valid_ratio: float = 0.0, seed: int = 0) -> Split:
  """Random per-user split: each user's interactions shuffled, then the first
  share to train, the next to valid and the last `test_ratio` to test.

  Every user keeps at least one training interaction; counts are rounded
  per user (`round(n * ratio)`), as stratified splitters usually do.
  """
  if not 0 < test_ratio < 1 or not 0 <= valid_ratio < 1 - test_ratio:
    raise ValueError(f"bad ratios test={test_ratio} valid={valid_ratio}")
  data = dedupe_latest(data)
  order = _order(data, "random", seed)
  pos, count = _rank_within_user(data.users[order])
  n_test = np.minimum(np.rint(count * test_ratio), count - 1)
  n_valid = np.minimum(np.rint(count * valid_ratio), count - 1 - n_test)
  from_end = count - 1 - pos
  test = order[from_end < n_test]
  valid = order[(from_end >= n_test) & (from_end < n_test + n_valid)]
  train = order[from_end >= n_test + n_valid]
  split = Split(data.select(np.sort(train)), data.select(np.sort(valid)),
                data.select(np.sort(test)), "ratio")
  assert_no_leakage(split)
  return split


def _pair_keys(part: Interactions, n_items: int) -> np.ndarray:
  return part.users.astype(np.int64) * (n_items + 1) + part.items


class LeakageError(AssertionError):
  """A split leaks evaluation interactions into training."""


def assert_no_leakage(split: Split) -> None:
  """Raises LeakageError if the split leaks.

  Checks: no (user, item) pair of valid or test is in train, none of test is
  in valid; every evaluated user has training data; and for time-ordered
  splits no training interaction of a user is later than that user's
  validation or test interaction, nor validation later than test.
  """
  n = split.train.n_items
  train = _pair_keys(split.train, n)
  valid, test = _pair_keys(split.valid, n), _pair_keys(split.test, n)
  for name, a, b in (("valid", valid, train), ("test", test, train),
                     ("test", test, valid)):
    shared = np.intersect1d(a, b)
    if shared.size:
      u, i = divmod(int(shared[0]), n + 1)
      raise LeakageError(
          f"{split.protocol}: {shared.size} {name} pairs also in the training "
          f"or validation data, e.g. user {u} item {i}")
  no_train = np.setdiff1d(np.r_[split.valid.users, split.test.users],
                          split.train.users)
  if no_train.size:
    raise LeakageError(f"{split.protocol}: users {no_train[:5]} are evaluated "
                       "but have no training interactions")
  if split.protocol == "loo-time":
    _assert_time_order(split.train, split.valid, "train", "valid")
    _assert_time_order(split.train, split.test, "train", "test")
    _assert_time_order(split.valid, split.test, "valid", "test")


def _assert_time_order(early: Interactions, late: Interactions,
                       early_name: str, late_name: str) -> None:
  """Every user's latest `early` time is <= that user's earliest `late` time."""
  size = max(early.n_users, late.n_users) + 1
  latest = np.full(size, np.iinfo(np.int64).min)
  np.maximum.at(latest, early.users, early.timestamps)
  earliest = np.full(size, np.iinfo(np.int64).max)
  np.minimum.at(earliest, late.users, late.timestamps)
  bad = np.flatnonzero(latest > earliest)
  if bad.size:
    raise LeakageError(
        f"loo-time: {bad.size} users have {early_name} interactions later "
        f"than their {late_name} interaction, e.g. user {bad[0]}")
