"""Frappe as in NFM / AFM / BARS Frappe_x1, with its train file rebuilt.

The NFM authors' split ships validation and test libfm files, but the train
file is absent here.  It is rebuilt from the original log and those two
files, following what the files show (checked on all 86,582 lines, see
`jaxrec/data/README.md`, "Frappe train file"):

* Encoding: 10 one-hot fields `FIELDS`; field f owns the global ids
  `offset_f .. offset_f + size_f - 1` (offsets are the running sum of the
  sizes, from 0), and within a field values are numbered in order of first
  appearance in `raw/frappe.csv`.  The `cnt` column is dropped.
* Each logged row is a positive (label 1) and gives 2 negatives (label -1):
  the same user and 8 context fields with an item the user never logged.
  A user's negative items are all distinct (drawn without replacement from
  the items the user never logged).
* The 288,609 lines were shuffled and cut 70/20/10 into train, validation
  and test.

So the train file holds the log minus the validation and test positives (a
multiset difference), and, for every (user, context) key k, exactly
`2 * logged(k) - negatives_in_valid_test(k)` negatives, whose items are drawn
without replacement from the items the user neither logged nor got as a
validation/test negative: the exact conditional distribution of the
original sampler given the two shipped files.  Only the random draw differs.

Ids keep the shipped files' encoding (0-based, no padding id), since
validation and test must be read with the same ids; readers shift them.

Legend: R = raw log rows, L = libfm lines, F = 10 fields, K = keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from jaxrec.data import textio
from jaxrec.data.errors import DataFormatError

FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework",
          "cost", "weather", "country", "city")
RAW_COLUMNS = ("user", "item", "cnt") + FIELDS[2:]
RAW = "raw/frappe.csv"
VALID = "nfm_split/frappe.validation.libfm"
TEST = "nfm_split/frappe.test.libfm"
NEGATIVES_PER_LOG = 2
USER, ITEM = 0, 1
LIBFM_LAYOUT = ("a label 1 or -1 and 10 space-separated features id:1 "
                "(libfm, one-hot)")


@dataclasses.dataclass(frozen=True)
class Encoding:
  """Raw value -> global feature id, field by field.

  Attributes:
    vocabs: per field of `FIELDS`, the raw values in id order.
  """

  vocabs: tuple[tuple[str, ...], ...]

  @classmethod
  def from_order(cls, raw: np.ndarray, rule: str) -> "Encoding":
    """Numbers each field's values by `rule`: 'first_appearance' in the raw
    log (R, F) str, or 'sorted' (as text)."""
    vocabs = []
    for column in raw.T:
      values, first = np.unique(column, return_index=True)
      if rule == "first_appearance":
        values = values[np.argsort(first)]
      elif rule != "sorted":
        raise ValueError(f"unknown rule {rule!r}")
      vocabs.append(tuple(values.tolist()))
    return cls(tuple(vocabs))

  @property
  def sizes(self) -> np.ndarray:
    return np.array([len(v) for v in self.vocabs])

  @property
  def offsets(self) -> np.ndarray:
    """(F,) first global id of each field."""
    return np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

  @property
  def n_features(self) -> int:
    return int(self.sizes.sum())

  def encode(self, raw: np.ndarray) -> np.ndarray:
    """(R, F) str raw values -> (R, F) int64 global ids."""
    out = np.empty(raw.shape, np.int64)
    for f, (vocab, offset) in enumerate(zip(self.vocabs, self.offsets)):
      vocab = np.asarray(vocab)
      order = np.argsort(vocab)
      pos = np.searchsorted(vocab, raw[:, f], sorter=order)
      local = order[np.minimum(pos, vocab.size - 1)]
      if (vocab[local] != raw[:, f]).any():
        raise ValueError(f"field {FIELDS[f]}: value outside the vocabulary")
      out[:, f] = offset + local
    return out


def read_raw(path: Path) -> np.ndarray:
  """(R, F) str: the log's `FIELDS` columns (`cnt` dropped), in file order."""
  path = Path(path)
  text, _ = textio.read_text(path, "utf-8", "\t", RAW_COLUMNS,
                             header="\t".join(RAW_COLUMNS))
  rows = textio.split_fields(path, text, "\t", RAW_COLUMNS, first_line=2)
  table = np.array(rows)
  for name in ("user", "item"):
    col = table[:, RAW_COLUMNS.index(name)]
    bad = ~np.char.isdigit(col)
    if bad.any():
      i = int(bad.argmax())
      raise DataFormatError(path, i + 2, f"{name} {col[i]!r} is not an id",
                            f"a non-negative integer {name}")
  return table[:, [RAW_COLUMNS.index(f) for f in FIELDS]]


def read_libfm(path: Path) -> tuple[np.ndarray, np.ndarray]:
  """The fixed 10-field files: labels (L,) int8 in {1, -1}, ids (L, F) int64.

  Raises DataFormatError naming the file and the first malformed line.
  """
  path = Path(path)
  text = textio.decode(path, path.read_bytes(), "ascii", LIBFM_LAYOUT)
  n_lines = text.count("\n") + 1
  try:
    table = np.loadtxt(io.StringIO(text.replace(":", " ")), dtype=np.int64,
                       comments=None, ndmin=2)
  except ValueError:
    table = None
  if (table is None or table.shape != (n_lines, 1 + 2 * len(FIELDS))
      or text.count(":") != len(FIELDS) * n_lines
      or not np.isin(table[:, 0], (1, -1)).all()
      or (table[:, 2::2] != 1).any() or (table[:, 1::2] < 0).any()):
    _scan_libfm(path, text)
  return table[:, 0].astype(np.int8), table[:, 1::2]


def _scan_libfm(path: Path, text: str) -> None:
  """Raises for the first malformed line (the fast reader found one)."""
  for i, line in enumerate(text.split("\n"), 1):
    tokens = line.split(" ")
    if len(tokens) != 1 + len(FIELDS):
      raise DataFormatError(path, i, f"got {len(tokens)} tokens", LIBFM_LAYOUT)
    if tokens[0] not in ("1", "-1"):
      raise DataFormatError(path, i, f"label {tokens[0]!r}", LIBFM_LAYOUT)
    for token in tokens[1:]:
      feature, _, value = token.partition(":")
      if not feature.isdigit() or value != "1":
        raise DataFormatError(path, i, f"feature {token!r}", LIBFM_LAYOUT)
  raise DataFormatError(path, None, "unparsable content", LIBFM_LAYOUT)


def write_libfm(path: Path, labels: np.ndarray, ids: np.ndarray) -> None:
  """Writes `label id:1 ... id:1` lines, as the shipped files do."""
  fmt = "%d" + " %d:1" * ids.shape[1]
  np.savetxt(path, np.column_stack([labels, ids]), fmt=fmt, newline="\n")


def row_keys(ids: np.ndarray, enc: Encoding) -> np.ndarray:
  """(R,) int64: one number per row of global ids (R, F), equal iff rows are."""
  return np.ravel_multi_index(tuple((ids - enc.offsets).T), enc.sizes)


def context_keys(ids: np.ndarray, enc: Encoding) -> np.ndarray:
  """(R,) int64 keys of (user, context): the row with its item id blanked."""
  blank = ids.copy()
  blank[:, ITEM] = enc.offsets[ITEM]
  return row_keys(blank, enc)


def multiset_missing(a: np.ndarray, b: np.ndarray) -> int:
  """How many entries of multiset `b` multiset `a` lacks."""
  values, counts = np.unique(b, return_counts=True)
  sorted_a = np.sort(a)
  have = (np.searchsorted(sorted_a, values, "right")
          - np.searchsorted(sorted_a, values, "left"))
  return int((counts - np.minimum(have, counts)).sum())


def multiset_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(len(a),) bool: which entries of `a` remain after removing multiset `b`.

  Of equal entries, the first ones in `a` are removed.  Raises ValueError
  unless every entry of `b` occurs in `a` at least as often.
  """
  missing = multiset_missing(a, b)
  if missing:
    raise ValueError(f"{missing} entries of b are not in a")
  if not b.size:
    return np.ones(a.size, bool)
  order = np.argsort(a, kind="stable")
  sorted_a = a[order]
  rank = np.arange(a.size) - np.searchsorted(sorted_a, sorted_a, "left")
  values, counts = np.unique(b, return_counts=True)
  pos = np.searchsorted(values, sorted_a)
  hit = values[np.minimum(pos, values.size - 1)] == sorted_a
  removed = np.where(hit, counts[np.minimum(pos, values.size - 1)], 0)
  keep = np.empty(a.size, bool)
  keep[order] = rank >= removed
  return keep


def negatives_needed(raw_ids: np.ndarray, split_neg: np.ndarray,
                     enc: Encoding) -> tuple[np.ndarray, np.ndarray]:
  """Train negatives owed per (user, context) key.

  Returns:
    rows: (K, F) one raw row per key, sorted by key (so by user).
    need: (K,) `2 * logged(key) - negatives of the key in split_neg`.
  """
  keys = context_keys(raw_ids, enc)
  uniq, first, logged = np.unique(keys, return_index=True, return_counts=True)
  split_keys = context_keys(split_neg, enc)
  pos = np.searchsorted(uniq, split_keys)
  pos = np.minimum(pos, uniq.size - 1)
  if (uniq[pos] != split_keys).any():
    raise ValueError(f"{int((uniq[pos] != split_keys).sum())} split negatives "
                     "have a (user, context) that was never logged")
  need = NEGATIVES_PER_LOG * logged - np.bincount(pos, minlength=uniq.size)
  if (need < 0).any():
    raise ValueError(f"{int((need < 0).sum())} (user, context) keys have more "
                     f"than {NEGATIVES_PER_LOG} split negatives per log")
  return raw_ids[first], need


def sample_items(users: np.ndarray, excluded: np.ndarray, n_users: int,
                 n_items: int, rng: np.random.Generator) -> np.ndarray:
  """(len(users),) local item ids, distinct per user, none excluded.

  `users` (M,) is sorted; excluded (E, 2) holds (user, local item) pairs.
  Each user's draws are a uniformly random ordered sample without
  replacement (a random key per item, sorted).  Unlike
  `negatives.distinct_negatives`, the number of draws varies per user.
  """
  noise = rng.random((n_users, n_items))
  noise[excluded[:, 0], excluded[:, 1]] = np.inf
  counts = np.bincount(users, minlength=n_users)
  free = np.isfinite(noise).sum(1)
  if (counts > free).any():
    u = int((counts - free).argmax())
    raise ValueError(f"user {u} needs {counts[u]} negatives; {free[u]} free")
  order = np.argsort(noise, axis=1, kind="stable")
  rank = np.arange(users.size) - np.searchsorted(users, users, "left")
  return order[users, rank]


def build_train(raw_ids: np.ndarray, splits: list[tuple[np.ndarray,
                                                        np.ndarray]],
                enc: Encoding, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The rebuilt train lines (labels (L,), ids (L, F)), shuffled.

  Args:
    raw_ids: (R, F) the encoded log.
    splits: (labels, ids) of the validation and test files.
    seed: the draw and the line order depend on it alone.
  """
  rng = np.random.default_rng(seed)
  labels = np.concatenate([s[0] for s in splits])
  ids = np.concatenate([s[1] for s in splits])
  keep = multiset_difference(row_keys(raw_ids, enc), row_keys(
      ids[labels == 1], enc))
  positives = raw_ids[keep]
  split_neg = ids[labels == -1]
  rows, need = negatives_needed(raw_ids, split_neg, enc)
  negatives = np.repeat(rows, need, axis=0)
  logged = np.concatenate([raw_ids, split_neg])[:, [USER, ITEM]]
  excluded = logged - enc.offsets[[USER, ITEM]]
  users = negatives[:, USER] - enc.offsets[USER]
  negatives[:, ITEM] = enc.offsets[ITEM] + sample_items(
      users, excluded, int(enc.sizes[USER]), int(enc.sizes[ITEM]), rng)
  out_ids = np.concatenate([positives, negatives])
  out_labels = np.repeat(np.array([1, -1], np.int8),
                         [len(positives), len(negatives)])
  order = rng.permutation(len(out_ids))
  return out_labels[order], out_ids[order]


def infer_encoding(raw: np.ndarray, positives: np.ndarray) -> tuple[
    Encoding, str]:
  """The first rule whose encoding contains every positive (L, F) as a
  multiset of the encoded log (R, F) str; ValueError if none does."""
  for rule in ("first_appearance", "sorted"):
    enc = Encoding.from_order(raw, rule)
    inside = ((positives >= enc.offsets)
              & (positives < enc.offsets + enc.sizes)).all()
    if inside and not multiset_missing(row_keys(enc.encode(raw), enc),
                                       row_keys(positives, enc)):
      return enc, rule
  raise ValueError("no numbering rule maps the log onto the positives")


def check_blocks(path: Path, ids: np.ndarray, enc: Encoding) -> None:
  """DataFormatError for the first line (L, F) with an id outside its
  field's block."""
  outside = (ids < enc.offsets) | (ids >= enc.offsets + enc.sizes)
  if outside.any():
    line, f = np.argwhere(outside)[0]
    lo, hi = enc.offsets[f], enc.offsets[f] + enc.sizes[f] - 1
    raise DataFormatError(path, int(line) + 1,
                          f"feature {ids[line, f]} in slot {f + 1}",
                          f"a {FIELDS[f]} id in [{lo}, {hi}]")


def default_cache_dir() -> Path:
  """`$JAXREC_CACHE_DIR/frappe` when set, else `~/.cache/jaxrec/frappe`."""
  root = os.environ.get("JAXREC_CACHE_DIR")
  return (Path(root) if root else Path.home() / ".cache" / "jaxrec") / "frappe"


def frappe_folder(data_dir: str | os.PathLike) -> Path:
  """The folder holding `raw/` and `nfm_split/`: `<data_dir>/frappe`, or
  `data_dir` itself."""
  data_dir = Path(data_dir)
  for folder in (data_dir / "frappe", data_dir):
    if all((folder / name).is_file() for name in (RAW, VALID, TEST)):
      return folder
  raise FileNotFoundError(
      f"{data_dir}: no frappe/{RAW}, frappe/{VALID} and frappe/{TEST}")


def sha256(path: Path) -> str:
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_file(data_dir: str | os.PathLike,
               cache_dir: str | os.PathLike | None = None,
               seed: int = 0) -> Path:
  """The rebuilt `frappe.train.libfm` for `seed`, built on the first call.

  Args:
    data_dir: the data root holding `frappe/` (or that folder itself); it is
      only read.
    cache_dir: where the file goes; default `default_cache_dir()`.

  Returns:
    `<cache_dir>/frappe.train.seed<seed>.libfm`, beside it `.sha256` (its
    digest, `sha256sum` format) and `.json` (the sources' digests).  A file
    whose digest or sources do not match is rebuilt.
  """
  folder = frappe_folder(data_dir)
  cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
  path = cache / f"frappe.train.seed{seed}.libfm"
  digest_path = path.with_suffix(".sha256")
  meta_path = path.with_suffix(".json")
  meta = {"seed": seed, "sources": {n: sha256(folder / n)
                                    for n in (RAW, VALID, TEST)}}
  if path.is_file() and digest_path.is_file() and meta_path.is_file():
    recorded = digest_path.read_text().split()[0]
    if (json.loads(meta_path.read_text()) == meta
        and sha256(path) == recorded):
      return path
  raw = read_raw(folder / RAW)
  splits = [read_libfm(folder / VALID), read_libfm(folder / TEST)]
  blocks = Encoding.from_order(raw, "sorted")  # any rule: same blocks
  for name, (_, ids) in zip((VALID, TEST), splits):
    check_blocks(folder / name, ids, blocks)
  positives = np.concatenate([ids[labels == 1] for labels, ids in splits])
  enc, _ = infer_encoding(raw, positives)
  labels, ids = build_train(enc.encode(raw), splits, enc, seed)
  cache.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}")
  write_libfm(tmp, labels, ids)
  digest = sha256(tmp)
  os.replace(tmp, path)
  digest_path.write_text(f"{digest}  {path.name}\n")
  meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
  return path
