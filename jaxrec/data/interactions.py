"""User-item interaction logs as flat int32 arrays.

Legend: E = number of interactions.
Ids: user and item id 0 is padding; real ids are 1..n_users and 1..n_items.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interactions:
  """An implicit- or explicit-feedback log.

  Attributes:
    users: (E,) int32 in [1, n_users].
    items: (E,) int32 in [1, n_items].
    n_users: number of users (embedding tables have n_users + 1 rows).
    n_items: number of items (embedding tables have n_items + 1 rows).
    ratings: (E,) float32 or None.
    timestamps: (E,) int64 or None (None when the source has no times).
    name: dataset name, used in file names and tables.
    item_raw_ids: (n_items + 1,) int64 original item id per internal id
      (entry 0 is -1), or None when internal ids equal the original ones.
  """

  users: np.ndarray
  items: np.ndarray
  n_users: int
  n_items: int
  ratings: np.ndarray | None = None
  timestamps: np.ndarray | None = None
  name: str = "interactions"
  item_raw_ids: np.ndarray | None = None

  def __post_init__(self):
    if self.users.shape != self.items.shape or self.users.ndim != 1:
      raise ValueError(
          f"{self.name}: users {self.users.shape} and items "
          f"{self.items.shape} must be 1-D arrays of one length")
    for label, ids, n in (("user", self.users, self.n_users),
                          ("item", self.items, self.n_items)):
      if ids.size and (ids.min() < 1 or ids.max() > n):
        raise ValueError(
            f"{self.name}: {label} ids span [{ids.min()}, {ids.max()}]; "
            f"expected ids in [1, {n}] (0 is padding)")

  def __len__(self) -> int:
    return int(self.users.shape[0])

  def select(self, index: np.ndarray) -> "Interactions":
    """The interactions at `index` (a boolean mask or integer positions)."""
    pick = lambda a: None if a is None else a[index]
    return dataclasses.replace(
        self, users=self.users[index], items=self.items[index],
        ratings=pick(self.ratings), timestamps=pick(self.timestamps))

  def item_counts(self) -> np.ndarray:
    """(n_items + 1,) int64 number of interactions per item (0 at padding)."""
    return np.bincount(self.items, minlength=self.n_items + 1)


def concat(a: Interactions, b: Interactions) -> Interactions:
  """`a` then `b` as one log (same id spaces)."""
  if (a.n_users, a.n_items) != (b.n_users, b.n_items):
    raise ValueError(f"{a.name} and {b.name} have different id spaces")
  both = lambda x, y: None if x is None or y is None else np.concatenate(
      [x, y])
  return dataclasses.replace(
      a, users=np.concatenate([a.users, b.users]),
      items=np.concatenate([a.items, b.items]),
      ratings=both(a.ratings, b.ratings),
      timestamps=both(a.timestamps, b.timestamps))
