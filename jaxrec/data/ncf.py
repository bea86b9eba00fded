"""The NCF paper's MovieLens-1M split (He et al., WWW 2017).

Test: each user's held-out latest rating and NCF's own 99 test negatives,
from `ncf/ml-1m.loo.test.csv` and `ncf/ml-1m.loo.negatives.csv` (the
authors' files re-expressed in MovieLens ids; see the data README for what
was reconstructed).  Train: every other ML-1M rating (994,169).
Validation: one random training interaction per user, held out for model
selection as the paper did (seeded).

NCF drew its negatives from items outside the user's *training* set, so for
156 users the test item itself is among the 99; sampled evaluation does not
count a candidate equal to the target as a competitor.

Legend: U = 6,040 users.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxrec.data import movielens, splits, textio
from jaxrec.data.errors import DataFormatError
from jaxrec.data.interactions import Interactions

TEST_FILE = "ncf/ml-1m.loo.test.csv"
NEGATIVES_FILE = "ncf/ml-1m.loo.negatives.csv"
N_NEGATIVES = 99


def _to_internal(path: Path, data: Interactions, raw: np.ndarray
                 ) -> np.ndarray:
  """MovieLens movie ids -> internal item ids; DataFormatError if unknown."""
  table = data.item_raw_ids
  pos = np.minimum(np.searchsorted(table, raw), table.size - 1)
  unknown = table[pos] != raw
  if unknown.any():
    row = int(np.argwhere(unknown)[0, 0]) + 2  # + header, 1-based
    raise DataFormatError(path, row, f"movie {raw[unknown][0]} was never "
                          "rated in ML-1M", "a rated MovieLens-1M movie id")
  return pos.astype(np.int32)


def load_split(data_dir: str | Path, *, valid_seed: int = 0
               ) -> tuple[splits.Split, np.ndarray]:
  """Returns (split, test negatives (U, 99) int32 aligned with split.test)."""
  root = Path(data_dir)
  data = movielens.load_ml1m(root)
  test_path, neg_path = root / TEST_FILE, root / NEGATIVES_FILE
  test = textio.read_numeric(test_path, ",", (
      "user", "movie", "rating", "timestamp"),
                             header="user_id,movie_id,rating,timestamp")
  neg_names = ("user",) + tuple(f"movie_id_{k}" for k in range(1, 100))
  neg = textio.read_numeric(neg_path, ",", neg_names,
                            header=",".join(("user_id",) + neg_names[1:]))
  users = test["user"].astype(np.int32)
  if not np.array_equal(users, np.arange(1, data.n_users + 1)):
    raise DataFormatError(test_path, None, "users are not 1..6040 in order",
                          "one row per user, in user order")
  if not np.array_equal(neg["user"], users):
    raise DataFormatError(neg_path, None, "users differ from the test file",
                          "one row per user, in user order")
  test_items = _to_internal(test_path, data, test["movie"])
  negatives = np.stack([_to_internal(neg_path, data, neg[n])
                        for n in neg_names[1:]], axis=1)
  key = lambda u, i: u.astype(np.int64) * (data.n_items + 1) + i
  is_test = np.isin(key(data.users, data.items), key(users, test_items))
  if is_test.sum() != users.size:
    raise DataFormatError(test_path, None, f"{is_test.sum()} of "
                          f"{users.size} test pairs are ML-1M ratings",
                          "every test pair to be a rating")
  rest = data.select(~is_test)
  # Validation: one random remaining interaction per user.
  order = np.lexsort((np.random.default_rng(valid_seed).random(len(rest)),
                      rest.users))
  first = np.r_[True, rest.users[order][1:] != rest.users[order][:-1]]
  valid_rows = np.zeros(len(rest), bool)
  valid_rows[order[first]] = True
  test_part = Interactions(users, test_items, data.n_users, data.n_items,
                           ratings=test["rating"].astype(np.float32),
                           name=data.name, item_raw_ids=data.item_raw_ids)
  split = splits.Split(rest.select(~valid_rows), rest.select(valid_rows),
                       test_part, "ncf")
  splits.assert_no_leakage(split)
  return split, negatives
