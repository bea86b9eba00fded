"""The NCF split loader on a small fixture in the shared files' formats."""

import numpy as np
import pytest

from jaxrec.data import ncf
from jaxrec.data.errors import DataFormatError

N_USERS, PER_USER = 4, 40


def _write(root, bad_negative_line=None, unknown_movie=False):
  """4 users each rate a disjoint block of 40 movies (ids 10, 20, ...)."""
  folds = root / "movielens-1m" / "ratings_5fold_uir"
  folds.mkdir(parents=True)
  movie = lambda u, k: 10 * ((u - 1) * PER_USER + k + 1)
  lines = [f"{u},{movie(u, k)},{1 + k % 5}" for u in range(1, N_USERS + 1)
           for k in range(PER_USER)]
  for f in range(5):
    (folds / f"test_1m{f + 1}.dat").write_text(
        "\n".join(lines[f::5]) + "\n")
  (root / "ncf").mkdir()
  test = ["user_id,movie_id,rating,timestamp"] + [
      f"{u},{movie(u, 0)},1,97800000{u}" for u in range(1, N_USERS + 1)]
  (root / ncf.TEST_FILE).write_text("\n".join(test) + "\n")
  header = ",".join(["user_id"] + [f"movie_id_{k}" for k in range(1, 100)])
  rows = [header]
  for u in range(1, N_USERS + 1):
    other = [movie(v, k) for v in range(1, N_USERS + 1) if v != u
             for k in range(PER_USER)][:99]
    if unknown_movie and u == 2:
      other[5] = 7
    rows.append(",".join(map(str, [u] + other)))
  if bad_negative_line:
    rows[bad_negative_line - 1] = rows[bad_negative_line - 1] + ",x"
  (root / ncf.NEGATIVES_FILE).write_text("\n".join(rows) + "\n")
  return movie


def test_split_follows_the_protocol(tmp_path):
  movie = _write(tmp_path)
  split, negatives = ncf.load_split(tmp_path, valid_seed=0)
  assert len(split.test) == len(split.valid) == N_USERS
  assert len(split.train) == N_USERS * (PER_USER - 2)
  raw = split.train.item_raw_ids
  assert [raw[i] for i in split.test.items] == [movie(u, 0) for u in
                                                range(1, N_USERS + 1)]
  assert negatives.shape == (N_USERS, 99)
  # Negatives are mapped to internal ids and none is the user's own movie.
  for u, row in zip(split.test.users, negatives):
    mine = {movie(int(u), k) for k in range(PER_USER)}
    assert not mine & set(raw[row].tolist())
  # The validation item depends on the seed only.
  again, _ = ncf.load_split(tmp_path, valid_seed=0)
  other, _ = ncf.load_split(tmp_path, valid_seed=1)
  assert np.array_equal(again.valid.items, split.valid.items)
  assert not np.array_equal(other.valid.items, split.valid.items)


def test_malformed_negatives_line_names_file_and_line(tmp_path):
  _write(tmp_path, bad_negative_line=3)
  with pytest.raises(DataFormatError, match=r"negatives\.csv:3: got 101"):
    ncf.load_split(tmp_path)


def test_unknown_movie_is_an_error_naming_the_line(tmp_path):
  _write(tmp_path, unknown_movie=True)
  with pytest.raises(DataFormatError, match=r"negatives\.csv:3: movie 7 "
                     "was never rated"):
    ncf.load_split(tmp_path)
