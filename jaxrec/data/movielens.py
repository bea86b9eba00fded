"""MovieLens-100k and MovieLens-1M loaders.

Rating files go through numpy's C reader; only when it fails is the file
re-read line by line, so that the first bad line is reported with its number.
No line is ever skipped. Side-feature tables index rows by id with row 0 as
padding, like the embedding tables they feed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import re

import numpy as np

from jaxrec.data.download import ARCHIVES, default_data_dir, fetch
from jaxrec.data import textio
from jaxrec.data.errors import DataFormatError
from jaxrec.data.interactions import Interactions

PathLike = str | os.PathLike | None

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
ML1M_GENRES = ML100K_GENRES[1:]
# Occupation codes 0..20 of ML-1M users.dat, named as in the ML-1M README.
ML1M_OCCUPATIONS = tuple(
    "other|academic/educator|artist|clerical/admin|college/grad student|"
    "customer service|doctor/health care|executive/managerial|farmer|"
    "homemaker|K-12 student|lawyer|programmer|retired|sales/marketing|"
    "scientist|self-employed|technician/engineer|tradesman/craftsman|"
    "unemployed|writer".split("|"))
PAD = "<pad>"
_MAX_ID = np.iinfo(np.int32).max
_UIRT = ("user", "item", "rating", "timestamp")


@dataclasses.dataclass(frozen=True)
class Users:
  """User side features; row u describes user id u, row 0 is padding.

  Attributes:
    age: (U+1,) int32 years (ML-100k) or age-bucket start (ML-1M); 0 = pad.
    gender: (U+1,) int32 index into `gender_vocab`.
    occupation: (U+1,) int32 index into `occupation_vocab`.
    zip_code: (U+1,) str, "" at padding.
    gender_vocab: names per code, entry 0 is PAD.
    occupation_vocab: names per code, entry 0 is PAD.
  """

  age: np.ndarray
  gender: np.ndarray
  occupation: np.ndarray
  zip_code: np.ndarray
  gender_vocab: tuple[str, ...]
  occupation_vocab: tuple[str, ...]

  def __len__(self) -> int:
    return int(np.count_nonzero(self.gender))


@dataclasses.dataclass(frozen=True)
class Items:
  """Item side features, rows in ascending original id, row 0 is padding.

  Attributes:
    raw_ids: (M+1,) int64 original id per row, -1 at padding.
    title: (M+1,) str, "" at padding.
    year: (M+1,) int32 year in the title, 0 when unknown.
    genres: (M+1, G) uint8 multi-hot over `genre_vocab`.
    genre_vocab: (G,) genre names.
  """

  raw_ids: np.ndarray
  title: np.ndarray
  year: np.ndarray
  genres: np.ndarray
  genre_vocab: tuple[str, ...]

  def __len__(self) -> int:
    return int(self.raw_ids.shape[0]) - 1

  def align(self, data: Interactions) -> "Items":
    """Rows reordered so that row k describes internal item id k of `data`."""
    raw = data.item_raw_ids
    if raw is None:  # internal ids are the original ones
      raw = np.r_[-1, 1:data.n_items + 1]
    # raw_ids ascends from its -1 at row 0, so one search finds every row.
    rows = np.minimum(np.searchsorted(self.raw_ids, raw), len(self))
    absent = self.raw_ids[rows] != raw
    if absent.any():
      raise ValueError(f"{data.name}: no metadata for item ids "
                       f"{raw[absent][:5].tolist()}")
    return dataclasses.replace(self, **{
        f: getattr(self, f)[rows] for f in ("raw_ids", "title", "year",
                                            "genres")})


def load_ml100k(data_dir: PathLike = None, *,
                download: bool = False) -> Interactions:
  """All 100,000 ML-100k ratings under their original ids.

  n_users and n_items are the largest ids (943 and 1,682).
  """
  folder = _require(data_dir, "ml-100k", ("u.data",), download)
  path = folder / "u.data"
  cols = textio.read_numeric(path, "\t", _UIRT)
  _check_values(path, cols, _MAX_ID, _MAX_ID)
  n_users, n_items = int(cols["user"].max()), int(cols["item"].max())
  return Interactions(
      users=cols["user"].astype(np.int32), items=cols["item"].astype(np.int32),
      n_users=n_users, n_items=n_items,
      ratings=cols["rating"].astype(np.float32),
      timestamps=cols["timestamp"].astype(np.int64), name="ml-100k")


def load_ml1m(data_dir: PathLike = None, *,
              download: bool = False) -> Interactions:
  """All 1,000,209 ML-1M ratings, movies renumbered 1..n_items.

  Reads `ratings.dat` when present, else the five `ratings_5fold_uir` folds
  (which carry no timestamps, so `timestamps` is None).
  """
  root = _root(data_dir)
  folder = root / ARCHIVES["ml-1m"].folder
  folds = sorted(folder.glob("ratings_5fold_uir/test_1m[1-5].dat"))
  if (folder / "ratings.dat").is_file() or len(folds) < 5:
    _require(root, "ml-1m", ("ratings.dat",), download)
    parts = [(folder / "ratings.dat", "::", _UIRT)]
  else:
    parts = [(p, ",", _UIRT[:3]) for p in folds]
  tables = []
  for path, sep, names in parts:
    tables.append(textio.read_numeric(path, sep, names))
    _check_values(path, tables[-1], _MAX_ID, _MAX_ID)
  col = {k: np.concatenate([t[k] for t in tables]) for k in parts[0][2]}
  raw_items, items = np.unique(col["item"], return_inverse=True)
  times = col.get("timestamp")
  return Interactions(
      users=col["user"].astype(np.int32), items=(items + 1).astype(np.int32),
      n_users=int(col["user"].max()), n_items=int(raw_items.size),
      ratings=col["rating"].astype(np.float32),
      timestamps=None if times is None else times.astype(np.int64),
      name="ml-1m", item_raw_ids=np.r_[-1, raw_items].astype(np.int64))


def load_ml100k_users(data_dir: PathLike = None, *,
                      download: bool = False) -> Users:
  """`u.user`: id|age|gender|occupation|zip."""
  path = _require(data_dir, "ml-100k", ("u.user",), download) / "u.user"
  rows = textio.read_fields(path, "utf-8", "|",
                      ("user", "age", "gender", "occupation", "zip"))
  vocab = (PAD,) + tuple(sorted({r[3] for r in rows}))
  return _users(path, rows, lambda s, i: vocab.index(s), vocab)


def load_ml1m_users(data_dir: PathLike = None, *,
                    download: bool = False) -> Users:
  """`users.dat`: UserID::Gender::Age::Occupation::Zip-code."""
  path = _require(data_dir, "ml-1m", ("users.dat",), download) / "users.dat"
  rows = textio.read_fields(path, "utf-8", "::",
                      ("user", "gender", "age", "occupation", "zip"))
  rows = [[r[0], r[2], r[1], r[3], r[4]] for r in rows]
  code = lambda s, i: textio.number(path, i, "occupation", s, int, 0, 20) + 1
  return _users(path, rows, code, (PAD,) + ML1M_OCCUPATIONS)


def load_ml100k_items(data_dir: PathLike = None, *,
                      download: bool = False) -> Items:
  """`u.item` (Latin-1): id|title|release|video release|url|19 genre flags."""
  path = _require(data_dir, "ml-100k", ("u.item",), download) / "u.item"
  names = ("item", "title", "release", "video release", "url") + ML100K_GENRES
  rows = textio.read_fields(path, "latin-1", "|", names)
  for i, r in enumerate(rows, 1):
    bad = [g for g, f in zip(ML100K_GENRES, r[5:]) if f not in ("0", "1")]
    if bad:
      raise DataFormatError(path, i, f"genre flag for {bad[0]} is not 0/1",
                            "19 genre flags, each 0 or 1")
  flags = [[int(f) for f in r[5:]] for r in rows]
  return _items(path, rows, flags, ML100K_GENRES)


def load_ml1m_movies(data_dir: PathLike = None, *,
                     download: bool = False) -> Items:
  """`movies.dat` (Latin-1): MovieID::Title::Genres, genres '|'-separated."""
  path = _require(data_dir, "ml-1m", ("movies.dat",), download) / "movies.dat"
  rows = textio.read_fields(path, "latin-1", "::", ("movie", "title", "genres"))
  for i, r in enumerate(rows, 1):
    unknown = set(r[2].split("|")) - set(ML1M_GENRES)
    if unknown:
      raise DataFormatError(path, i, f"unknown genre {min(unknown)!r}",
                            f"'|'-separated genres from {ML1M_GENRES}")
  flags = [[int(g in r[2].split("|")) for g in ML1M_GENRES] for r in rows]
  return _items(path, rows, flags, ML1M_GENRES)


def _require(data_dir: PathLike, name: str, files: tuple[str, ...],
             download: bool) -> Path:
  """The dataset folder, fetched first if `files` are missing and allowed."""
  root = _root(data_dir)
  folder = root / ARCHIVES[name].folder
  missing = [f for f in files if not (folder / f).is_file()]
  if missing and not download:
    raise FileNotFoundError(
        f"{folder / missing[0]} not found. Get it with "
        f"jaxrec.data.download.fetch({name!r}, {str(root)!r}), pass "
        f"download=True, or set JAXREC_DATA_DIR to a folder holding "
        f"{folder.name}/")
  if missing:
    fetch(name, root)
  return folder


def _root(data_dir: PathLike) -> Path:
  return Path(data_dir) if data_dir is not None else default_data_dir()


def _check_values(path: Path, cols: dict[str, np.ndarray], n_users: int,
                  n_items: int) -> None:
  """Raises for the first line with an id or rating out of range."""
  limits = {"user": (1, n_users), "item": (1, n_items), "rating": (1, 5)}
  first = None
  for name, (lo, hi) in limits.items():
    v = cols[name]
    bad = np.flatnonzero(~((v >= lo) & (v <= hi)))  # NaN counts as bad
    if bad.size and (first is None or bad[0] < first[0]):
      first = (bad[0], name, lo, hi)
  if first is not None:
    row, name, lo, hi = first
    expected = (f"a rating in [{lo}, {hi}]" if name == "rating" else
                f"{name} ids in [{lo}, {hi}] (0 is padding)")
    raise DataFormatError(path, int(row) + 1,
                          f"{name} {cols[name][row]} is out of range",
                          expected)


def _users(path: Path, rows: list[list[str]], occupation_code,
           occupation_vocab: tuple[str, ...]) -> Users:
  """Users table from [id, age, gender, occupation, zip] rows."""
  ids = [textio.number(path, i, "user", r[0], int, 1, _MAX_ID)
         for i, r in enumerate(rows, 1)]
  _check_unique(path, "user", ids)
  genders = (PAD,) + tuple(sorted({r[2] for r in rows}))
  n = max(ids) + 1
  age, gender, occupation = (np.zeros(n, np.int32) for _ in range(3))
  zip_code = np.full(n, "", dtype=object)
  for i, (u, r) in enumerate(zip(ids, rows), 1):
    age[u] = textio.number(path, i, "age", r[1], int, 0, 200)
    gender[u] = genders.index(r[2])
    occupation[u] = occupation_code(r[3], i)
    zip_code[u] = r[4]
  return Users(age, gender, occupation, zip_code.astype(str), genders,
               occupation_vocab)


def _items(path: Path, rows: list[list[str]], flags: list[list[int]],
           vocab: tuple[str, ...]) -> Items:
  """Items table from [id, title, ...] rows and (M, G) genre flags."""
  ids = [textio.number(path, i, "item", r[0], int, 1, _MAX_ID)
         for i, r in enumerate(rows, 1)]
  _check_unique(path, "item", ids)
  order = np.argsort(ids, kind="stable")
  pad = lambda a, fill: np.concatenate([[fill], np.asarray(a)[order]])
  years = [re.findall(r"\((\d{4})\)", r[1]) for r in rows]
  genres = np.zeros((len(rows) + 1, len(vocab)), np.uint8)
  genres[1:] = np.asarray(flags, np.uint8)[order]
  return Items(
      raw_ids=pad(ids, -1).astype(np.int64),
      title=pad([r[1] for r in rows], "").astype(str),
      year=pad([int(y[-1]) if y else 0 for y in years], 0).astype(np.int32),
      genres=genres, genre_vocab=vocab)


def _check_unique(path: Path, name: str, ids: list[int]) -> None:
  seen = {}
  for line, value in enumerate(ids, 1):
    if value in seen:
      raise DataFormatError(path, line,
                            f"{name} id {value} repeats line {seen[value]}",
                            f"each {name} id once")
    seen[value] = line
