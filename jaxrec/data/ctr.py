"""CTR file formats: libfm/libsvm, libffm and Criteo-style TSV.

Every reader checks every line; a malformed one raises `DataFormatError`
naming the file, the 1-based line and what was expected.  Readers return raw
columns; `jaxrec.data.fields` fits vocabularies and encodes them.
Datasets built from these (Frappe_x1, MovieLens-1M as CTR) are in
`jaxrec.data.ctr_datasets`.

Legend: N = lines, L = most features on one line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from jaxrec.data import fields, textio
from jaxrec.data.errors import DataFormatError

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
_LABELS = {"1": 1.0, "+1": 1.0, "0": 0.0, "-1": 0.0}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LIBFM_LINE = re.compile(rf"\S+(?:[ \t]+\d+:{_NUM})*[ \t]*")
_LIBFFM_LINE = re.compile(rf"\S+(?:[ \t]+\d+:\d+:{_NUM})*[ \t]*")


@dataclasses.dataclass(frozen=True)
class SparseRows:
  """Sparse examples as padded arrays.

  Attributes:
    labels: (N,) float32 in {0, 1} (libfm's -1 becomes 0).
    features: (N, L) int64 feature indices as in the file, -1 at padding.
    values: (N, L) float32, 0 at padding.
    fields: (N, L) int64 field indices (libffm), -1 at padding; None for
      libfm.
  """

  labels: np.ndarray
  features: np.ndarray
  values: np.ndarray
  fields: np.ndarray | None = None

  def __len__(self) -> int:
    return int(self.labels.shape[0])


def read_libfm(path) -> SparseRows:
  """`label feat:val feat:val ...` (libfm / libsvm); label in {1, +1, 0, -1}."""
  return _read_sparse(Path(path), _LIBFM_LINE, 2,
                      "'label feat:val ...' with integer feat")


def read_libffm(path) -> SparseRows:
  """`label field:feat:val ...` (libffm); label in {1, +1, 0, -1}."""
  return _read_sparse(Path(path), _LIBFFM_LINE, 3,
                      "'label field:feat:val ...' with integer field, feat")


def _read_sparse(path: Path, pattern: re.Pattern, parts: int,
                 expected: str) -> SparseRows:
  text = textio.decode(path, path.read_bytes(), "ascii", expected)
  lines = text.split("\n")
  tokens = []
  for i, line in enumerate(lines, 1):
    if not pattern.fullmatch(line):
      raise DataFormatError(path, i, f"line {line[:60]!r} does not parse",
                            expected)
    tokens.append(line.split())
  labels = np.empty(len(lines), np.float32)
  for i, t in enumerate(tokens):
    label = _LABELS.get(t[0])
    if label is None:
      raise DataFormatError(path, i + 1, f"label {t[0]!r}",
                            "a label in {1, +1, 0, -1}")
    labels[i] = label
  width = max(len(t) for t in tokens) - 1
  n_feat = np.array([len(t) - 1 for t in tokens])
  # Every token already matched the pattern, so one flat parse is safe.
  flat = ":".join(":".join(t[1:]) for t in tokens if len(t) > 1)
  table = (np.array(flat.split(":"), np.float64).reshape(-1, parts)
           if flat else np.zeros((0, parts)))
  mask = np.arange(width)[None, :] < n_feat[:, None]  # (N, L)
  padded = lambda col, fill: _scatter(mask, table[:, col], fill)
  features = padded(parts - 2, -1).astype(np.int64)
  fields_ = padded(0, -1).astype(np.int64) if parts == 3 else None
  return SparseRows(labels, features, padded(parts - 1, 0).astype(np.float32),
                    fields_)


def _scatter(mask: np.ndarray, flat: np.ndarray, fill) -> np.ndarray:
  out = np.full(mask.shape, fill, np.float64)
  out[mask] = flat
  return out


def libfm_columns(rows: SparseRows, names: tuple[str, ...], path="") -> dict:
  """Fixed-width libfm rows as one categorical column per position.

  The NFM/BARS files list one feature per field in field order, so position
  j is field j.  Raises unless every line has exactly len(names) features.
  """
  n_feat = (rows.features >= 0).sum(axis=1)
  bad = np.flatnonzero(n_feat != len(names))
  if bad.size:
    raise DataFormatError(path, int(bad[0]) + 1,
                          f"got {n_feat[bad[0]]} features",
                          f"{len(names)} features, one per field {names}")
  return {name: rows.features[:, j] for j, name in enumerate(names)}


def read_criteo(path, sep: str = "\t", header: bool = False
                ) -> dict[str, np.ndarray]:
  """Criteo-style rows: label, I1..I13 (numbers, may be empty), C1..C26.

  Returns columns 'label' (N,) float32, I* (N,) float64 with NaN when empty,
  C* (N,) str ('' when empty).  `header=True` checks and skips a first line
  naming the columns (as in DeepCTR's criteo_sample.txt, comma-separated).
  """
  path = Path(path)
  names = ("label",) + CRITEO_NUMERIC + CRITEO_CATEGORICAL
  text = textio.decode(path, path.read_bytes(), "utf-8",
                       textio.layout(sep, names))
  first = 1
  if header:
    got, _, text = text.partition("\n")
    if got.split(sep) != list(names):
      raise DataFormatError(path, 1, f"header {got[:60]!r}",
                            f"the header {sep.join(names)[:60]!r}...")
    first = 2
  rows = textio.split_fields(path, text, sep, names, first)
  table = np.array(rows, dtype=object).reshape(len(rows), len(names))
  out = {"label": np.empty(len(rows), np.float32)}
  for i, r in enumerate(rows, first):
    if r[0] not in ("0", "1"):
      raise DataFormatError(path, i, f"label {r[0]!r}", "a label 0 or 1")
    out["label"][i - first] = float(r[0])
  for j, name in enumerate(CRITEO_NUMERIC, 1):
    col = table[:, j]
    values = np.full(len(rows), np.nan)
    for i, cell in enumerate(col):
      if cell != "":
        values[i] = textio.number(path, i + first, name, cell, float)
    out[name] = values
  for j, name in enumerate(CRITEO_CATEGORICAL, 1 + len(CRITEO_NUMERIC)):
    out[name] = table[:, j].astype(str)
  return out


def criteo_fields(min_count: int = 10, hash_buckets: int = 0
                  ) -> tuple[fields.Field, ...]:
  """Criteo's 39 fields as BARS encodes them: numeric ones bucketised with
  `fields.criteo_bucket`, categorical ones with a minimum count."""
  return tuple(
      [fields.Field(n, "numeric", min_count=min_count)
       for n in CRITEO_NUMERIC] +
      [fields.Field(n, "categorical", min_count=min_count,
                    hash_buckets=hash_buckets) for n in CRITEO_CATEGORICAL])
