"""CTR datasets: Frappe as BARS Frappe_x1, and MovieLens-1M as CTR.

Each loader returns a `CTRDataset`: the fitted `fields.Encoder` (its layout
builds the models) and one `fields.CTRData` per role.  Vocabularies are
fitted on the training rows only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxrec.data import ctr, fields, movielens
from jaxrec.data.download import default_data_dir

# Field order of the NFM/BARS Frappe libfm files (checked on their id ranges).
FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend",
                 "homework", "cost", "weather", "country", "city")
FRAPPE_FOLDER = "frappe/nfm_split"
ML1M_MAX_GENRES = 6  # the most genres of any ML-1M movie


@dataclasses.dataclass(frozen=True)
class CTRDataset:
  name: str
  encoder: fields.Encoder
  roles: dict[str, fields.CTRData]

  @property
  def layout(self) -> fields.Layout:
    return self.encoder.layout


def _root(data_dir) -> Path:
  return Path(data_dir) if data_dir else default_data_dir()


def load_frappe_x1(data_dir=None, train: str = "rebuilt",
                   cache_dir=None) -> CTRDataset:
  """Frappe_x1 (BARS): 10 one-hot fields, min count 1, vocab from train.

  Args:
    train: 'rebuilt': the train file from `jaxrec.data.frappe.train_file`
      (the NFM train split rebuilt with the validation/test encoding);
      'valid-split': a development stand-in that trains on a random 80% of
      the validation file and validates on the rest (test stays the test
      file).  Only 'rebuilt' gives BARS-comparable numbers.
  """
  folder = _root(data_dir) / FRAPPE_FOLDER
  read = lambda p: ctr.read_libfm(p)
  valid = read(folder / "frappe.validation.libfm")
  test = read(folder / "frappe.test.libfm")
  if train == "rebuilt":
    from jaxrec.data import frappe  # the rebuilt train file (another module)
    train_path = frappe.train_file(_root(data_dir), cache_dir)
    parts = {"train": (read(train_path), train_path)}
  elif train == "valid-split":
    rows = np.random.default_rng(0).permutation(len(valid))
    cut = int(0.8 * len(valid))
    parts = {"train": (_take(valid, rows[:cut]), "valid[:80%]")}
    valid = _take(valid, rows[cut:])
  else:
    raise ValueError(f"train={train!r}; expected 'rebuilt' or 'valid-split'")
  parts["valid"] = (valid, folder / "frappe.validation.libfm")
  parts["test"] = (test, folder / "frappe.test.libfm")
  columns = {role: ctr.libfm_columns(r, FRAPPE_FIELDS, path)
             for role, (r, path) in parts.items()}
  schema = [fields.Field(n) for n in FRAPPE_FIELDS]
  encoder = fields.fit(schema, columns["train"])
  roles = {}
  for role, (rows, _) in parts.items():
    ids, values = encoder.encode(columns[role])
    roles[role] = fields.CTRData(ids, values, rows.labels)
  return CTRDataset("frappe_x1", encoder, roles)


def _take(rows: ctr.SparseRows, index: np.ndarray) -> ctr.SparseRows:
  return ctr.SparseRows(rows.labels[index], rows.features[index],
                        rows.values[index])


ML1M_SCHEMA = (
    fields.Field("user"), fields.Field("movie"), fields.Field("gender"),
    fields.Field("age"), fields.Field("occupation"), fields.Field("zip"),
    fields.Field("genres", "multi_hot", max_len=ML1M_MAX_GENRES))


@dataclasses.dataclass(frozen=True)
class ML1MFeatures:
  """Side tables of ML-1M and the fitted encoder, to encode any pairs.

  The pipeline (two-tower retrieval, then a DeepFM ranker) scores arbitrary
  (user, movie) pairs with `encode_pairs`.

  Attributes:
    encoder: fitted on the training split.
    users: movielens.Users, indexed by original user id.
    movies: movielens.Items, rows in ascending original movie id.
  """

  encoder: fields.Encoder
  users: movielens.Users
  movies: movielens.Items

  def columns(self, users: np.ndarray, movies: np.ndarray) -> dict:
    """Raw field columns of (N,) user ids and (N,) movie ids (both in the
    original GroupLens numbering)."""
    users, movies = np.asarray(users), np.asarray(movies)
    rows = np.searchsorted(self.movies.raw_ids, movies)
    rows = np.minimum(rows, len(self.movies))
    if not np.all(self.movies.raw_ids[rows] == movies):
      bad = movies[self.movies.raw_ids[rows] != movies]
      raise ValueError(f"movie ids not in movies.dat: {bad[:5].tolist()}")
    if users.size and (users.min() < 1 or users.max() >= len(
        self.users.gender) or not np.all(self.users.gender[users])):
      raise ValueError("user ids not in users.dat")
    vocab = np.asarray(self.movies.genre_vocab)
    flags = self.movies.genres[rows].astype(bool)  # (N, G)
    # Genre names in vocabulary order, '' after the last one.
    order = np.argsort(~flags, axis=1, kind="stable")[:, :ML1M_MAX_GENRES]
    genres = np.where(np.take_along_axis(flags, order, 1), vocab[order], "")
    return {"user": users, "movie": movies,
            "gender": self.users.gender[users], "age": self.users.age[users],
            "occupation": self.users.occupation[users],
            "zip": self.users.zip_code[users], "genres": genres}

  def encode_pairs(self, users: np.ndarray, movies: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(N,) user ids, (N,) movie ids -> ids (N, S) int32, values (N, S)."""
    return self.encoder.encode(self.columns(users, movies))


def load_ml1m_ctr(data_dir=None, split_seed: int = 0
                  ) -> tuple[CTRDataset, ML1MFeatures]:
  """MovieLens-1M as CTR: label = rating >= 4; random 8:1:1 split.

  Fields: user, movie, gender, age, occupation, zip (one-hot) and genres
  (multi-hot, mean-pooled); vocabularies (min count 1) from train.
  """
  root = _root(data_dir)
  ratings = movielens.load_ml1m(root)
  users = movielens.load_ml1m_users(root)
  movies = movielens.load_ml1m_movies(root)
  raw_movies = ratings.item_raw_ids[ratings.items]
  labels = (ratings.ratings >= 4).astype(np.float32)
  n = len(labels)
  order = np.random.default_rng(split_seed).permutation(n)
  cuts = (int(0.8 * n), int(0.9 * n))
  index = dict(zip(("train", "valid", "test"), np.split(order, cuts)))
  probe = ML1MFeatures(fields.Encoder(()), users, movies)
  columns = probe.columns(ratings.users, raw_movies)
  train_cols = {k: v[index["train"]] for k, v in columns.items()}
  encoder = fields.fit(ML1M_SCHEMA, train_cols)
  features = ML1MFeatures(encoder, users, movies)
  ids, values = encoder.encode(columns)
  roles = {role: fields.CTRData(ids[rows], values[rows], labels[rows])
           for role, rows in index.items()}
  return CTRDataset(f"ml-1m-ctr-seed{split_seed}", encoder, roles), features
