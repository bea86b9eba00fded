"""What evaluation needs from a split: targets, exclusions, frozen negatives.

Legend: U = evaluated users, n = sampled negatives per user.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxrec.data import negatives as neg
from jaxrec.data.interactions import Interactions
from jaxrec.data.splits import Split


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One role ('valid' or 'test') of a leave-one-out split.

  Attributes:
    users: (U,) int32 evaluated users.
    targets: (U,) int32 held-out item per user.
    exclude_indptr, exclude_items: CSR over users of items masked in full
      ranking (train items; for test also the validation item).
    negatives: (U, n) int32 distinct items the user never interacted with.
  """

  role: str
  n_items: int
  users: np.ndarray
  targets: np.ndarray
  exclude_indptr: np.ndarray
  exclude_items: np.ndarray
  negatives: np.ndarray

  def candidates(self) -> np.ndarray:
    """(U, 1 + n) int32: the target in column 0, then the negatives."""
    return np.concatenate([self.targets[:, None], self.negatives], axis=1)


@dataclasses.dataclass(frozen=True)
class RelevanceSet:
  """One role of a ratio split: several held-out items per user.

  Attributes:
    users: (U,) int32 users with at least one held-out item.
    relevant_indptr, relevant_items: CSR of each user's held-out items.
    exclude_indptr, exclude_items: CSR of items masked in the ranking
      (train items; for test also the validation items).
  """

  role: str
  n_items: int
  users: np.ndarray
  relevant_indptr: np.ndarray
  relevant_items: np.ndarray
  exclude_indptr: np.ndarray
  exclude_items: np.ndarray


def ratio_sets(split: Split, test_ratio: float
               ) -> tuple[dict[str, RelevanceSet], str]:
  """'valid' (when the split has one) and 'test' RelevanceSets, and the
  protocol label, e.g. 'random-75-25-full' for test_ratio 0.25."""
  train, valid, test = split.train, split.valid, split.test
  sets = {}
  for role, part, known in (("valid", valid, [train]),
                            ("test", test, [train, valid])):
    if not len(part):
      continue
    users = np.unique(part.users).astype(np.int32)
    rel_ptr, rel_items = _exclusions([part], users)
    excl_ptr, excl_items = _exclusions(known, users)
    sets[role] = RelevanceSet(role, train.n_items, users, rel_ptr, rel_items,
                              excl_ptr, excl_items)
  share = round(100 * test_ratio)
  return sets, f"random-{100 - share}-{share}-full"


def _exclusions(parts: list[Interactions], users: np.ndarray):
  ref = parts[0]
  known = neg.PositiveSets.build(
      np.concatenate([p.users for p in parts]),
      np.concatenate([p.items for p in parts]), ref.n_users, ref.n_items)
  counts = known.counts()[users]
  indptr = np.concatenate([[0], np.cumsum(counts)])
  return indptr, known.rows_of(users)[1]


def leave_one_out_sets(split: Split, *, n_negatives: int, sampling: str,
                       seed: int, cache_dir: str | Path,
                       test_negatives: np.ndarray | None = None
                       ) -> tuple[dict[str, EvalSet], str, str]:
  """Builds 'valid' and 'test' EvalSets with frozen sampled negatives.

  Args:
    split: a leave-one-out split (one valid and one test item per user).
    n_negatives: negatives per user for the sampled protocol.
    sampling: 'uniform' or 'popularity' (by all-data interaction counts,
      as in the BERT4Rec protocol).
    seed: seed of the negatives (fixed per dataset, not per model run).
    cache_dir: the negatives file lives here, named after dataset, split
      fingerprint, sampling and seed, so every model reuses it.
    test_negatives: (U_test, n) a paper's own fixed test negatives; then
      only validation negatives are drawn and the label is the paper's.

  Returns:
    ({'valid': EvalSet, 'test': EvalSet}, protocol label, sha256 of negatives).
  """
  if sampling not in ("uniform", "popularity"):
    raise ValueError(f"unknown negative sampling {sampling!r}")
  train, valid, test = split.train, split.valid, split.test
  everything = neg.PositiveSets.build(
      np.concatenate([train.users, valid.users, test.users]),
      np.concatenate([train.items, valid.items, test.items]),
      train.n_users, train.n_items)
  weights = None
  if sampling == "popularity":
    weights = np.bincount(np.concatenate([train.items, valid.items,
                                          test.items]),
                          minlength=train.n_items + 1).astype(np.float64)

  def draw():
    rng = np.random.default_rng([seed, 7919])
    out = {role: neg.distinct_negatives(part.users, everything, n_negatives,
                                        rng, weights)
           for role, part in (("valid", valid), ("test", test))
           if not (role == "test" and test_negatives is not None)}
    if test_negatives is not None:
      out["test"] = np.asarray(test_negatives, np.int32)
    return out

  name = (f"{train.name}-{split.fingerprint()}-{sampling}{n_negatives}"
          f"-seed{seed}.npz")
  arrays, digest = neg.frozen_eval_negatives(Path(cache_dir) / name, draw)
  sets = {}
  for role, part, known in (("valid", valid, [train]),
                            ("test", test, [train, valid])):
    if arrays[role].shape != (len(part), n_negatives):
      raise ValueError(f"{name}: {role} negatives have shape "
                       f"{arrays[role].shape}; expected {(len(part), n_negatives)}")
    indptr, items = _exclusions(known, part.users)
    sets[role] = EvalSet(role, train.n_items, part.users, part.items, indptr, items,
                         arrays[role])
  label = (f"{split.protocol}-sampled-{n_negatives}"
           if test_negatives is not None
           else f"sampled-{sampling}-{n_negatives}")
  return sets, label, digest
