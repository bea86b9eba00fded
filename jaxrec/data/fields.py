"""Field-structured CTR data: schema, vocabularies and the batch layout.

The batch layout every CTR model takes (`jaxrec.models.fm`, `.deepfm`):

  ids     (B, S) int32    global feature ids; 0 is padding
  values  (B, S) float32  the feature's value (1 for a one-hot category,
                          1/n for each of n multi-hot categories, the raw
                          number for a valued numeric field; 0 at padding)
  labels  (B,)   float32  click = 1, no click = 0

with a static `slot_fields (S,)`: the field of each slot. A one-hot field
takes one slot, a multi-hot field (e.g. genres) `max_len` slots that models
pool per field, a numeric field one slot (bucketised to a category, or kept
as a weighted feature).

Global ids: field f owns ids `offset_f .. offset_f + size_f - 1`, with local
id 0 the field's out-of-vocabulary id (values seen fewer than `min_count`
times in the data the vocabulary was fitted on, and unseen ones) and
offsets starting at 1, so that id 0 is padding only. Vocabularies are fitted
on training rows alone, so validation and test never shape the encoding.

Legend: N = examples, B = batch, S = slots, F = fields.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

KINDS = ("categorical", "multi_hot", "numeric")


@dataclasses.dataclass(frozen=True)
class Field:
  """One input field.

  Attributes:
    name: e.g. 'user', 'genres', 'I1'.
    kind: 'categorical' (one value), 'multi_hot' (up to `max_len` values,
      pooled) or 'numeric' (one number).
    min_count: categories seen fewer times go to the OOV id.
    hash_buckets: > 0 hashes values into this many ids (crc32) instead of
      keeping a vocabulary (for huge vocabularies); min_count is then unused.
    max_len: slots of a multi-hot field (longer lists are truncated).
    bucketize: numeric only: True maps x to a category with Criteo's rule
      (see `criteo_bucket`); False keeps x as the weight of one feature.
  """

  name: str
  kind: str = "categorical"
  min_count: int = 1
  hash_buckets: int = 0
  max_len: int = 1
  bucketize: bool = True

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"field {self.name!r}: kind {self.kind!r}; expected "
                       f"one of {KINDS}")
    if self.kind != "multi_hot" and self.max_len != 1:
      raise ValueError(f"field {self.name!r}: max_len is for multi_hot only")

  @property
  def slots(self) -> int:
    return self.max_len if self.kind == "multi_hot" else 1

  @property
  def valued(self) -> bool:
    """A numeric field kept as one weighted feature."""
    return self.kind == "numeric" and not self.bucketize


@dataclasses.dataclass(frozen=True)
class Layout:
  """The static shape of encoded data, all a model needs to be built.

  Attributes:
    field_names: (F,) names.
    slot_fields: (S,) field index of each slot.
    offsets: (F,) first global id of each field.
    sizes: (F,) ids per field (local id 0 = OOV included).
  """

  field_names: tuple[str, ...]
  slot_fields: tuple[int, ...]
  offsets: tuple[int, ...]
  sizes: tuple[int, ...]

  @property
  def n_features(self) -> int:
    """Rows of an embedding table: every id plus padding id 0."""
    return 1 + sum(self.sizes)

  @property
  def n_fields(self) -> int:
    return len(self.field_names)


def criteo_bucket(x: np.ndarray) -> np.ndarray:
  """Criteo's numeric rule (3 Idiots; FuxiCTR/BARS `convert_to_bucket`):
  floor(ln(x)^2) for x > 2, else int(x). BARS uses the natural log.

  x: (N,) float, NaN for missing. Returns (N,) float: NaN stays NaN.
  """
  x = np.asarray(x, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    big = np.floor(np.log(np.where(x > 2, x, 3.0)) ** 2)
  return np.where(x > 2, big, np.trunc(x))


def _as_keys(column: np.ndarray) -> np.ndarray:
  """Category values as strings ('' = missing), so ints and strs mix."""
  column = np.asarray(column)
  if column.dtype.kind == "f":
    out = np.char.mod("%d", np.nan_to_num(column, nan=0).astype(np.int64))
    return np.where(np.isnan(column), "", out)
  return column.astype(str)


def _hash(keys: np.ndarray, buckets: int) -> np.ndarray:
  """Stable crc32 hash of each key into 1..buckets (0 stays OOV/missing)."""
  uniq, inverse = np.unique(keys, return_inverse=True)
  h = np.array([zlib.crc32(k.encode()) % buckets + 1 for k in uniq],
               np.int64)
  return h[inverse.reshape(keys.shape)]


@dataclasses.dataclass(frozen=True)
class FieldVocab:
  """The fitted encoding of one field: sorted kept keys, local id = 1 + rank.

  `keys` is empty for hashed and valued fields.
  """

  field: Field
  keys: np.ndarray

  @property
  def size(self) -> int:
    if self.field.valued:
      return 1
    if self.field.hash_buckets:
      return self.field.hash_buckets + 1
    return self.keys.size + 1

  def local_ids(self, keys: np.ndarray) -> np.ndarray:
    """(...,) str keys -> (...,) int64 local ids, 0 = OOV or missing."""
    if self.field.hash_buckets:
      return np.where(keys == "", 0, _hash(keys, self.field.hash_buckets))
    pos = np.minimum(np.searchsorted(self.keys, keys), max(self.keys.size - 1,
                                                            0))
    found = (self.keys.size > 0) & (self.keys[pos] == keys) & (keys != "")
    return np.where(found, pos + 1, 0)


def fit_vocab(field: Field, column) -> FieldVocab:
  """Vocabulary of `field` from training values.

  column: (N,) values for one-valued fields; for multi-hot, (N, max_len)
  with '' (or NaN) as no value.
  """
  if field.valued or field.hash_buckets:
    return FieldVocab(field, np.array([], str))
  keys = _keys(field, column)
  uniq, counts = np.unique(keys[keys != ""], return_counts=True)
  return FieldVocab(field, uniq[counts >= field.min_count])


def _keys(field: Field, column) -> np.ndarray:
  column = np.asarray(column)
  if field.kind == "numeric":
    column = criteo_bucket(column)
  return _as_keys(column)


@dataclasses.dataclass(frozen=True)
class Encoder:
  """Fitted vocabularies of every field; `encode` maps columns to a batch."""

  vocabs: tuple[FieldVocab, ...]

  @property
  def layout(self) -> Layout:
    sizes = tuple(v.size for v in self.vocabs)
    offsets = tuple(int(x) for x in 1 + np.cumsum((0,) + sizes[:-1]))
    slot_fields = tuple(f for f, v in enumerate(self.vocabs)
                        for _ in range(v.field.slots))
    return Layout(tuple(v.field.name for v in self.vocabs), slot_fields,
                  offsets, sizes)

  def encode(self, columns: dict) -> tuple[np.ndarray, np.ndarray]:
    """Columns by field name -> ids (N, S) int32, values (N, S) float32."""
    layout = self.layout
    ids, values = [], []
    for vocab, offset in zip(self.vocabs, layout.offsets):
      field = vocab.field
      column = np.asarray(columns[field.name])
      if field.valued:
        x = np.nan_to_num(column.astype(np.float64), nan=0.0)
        ids.append(np.full((column.shape[0], 1), offset, np.int64))
        values.append(x[:, None])
        continue
      keys = _keys(field, column)
      if field.kind == "multi_hot":
        keys = _fit_width(keys, field.max_len)
        present = keys != ""
        n = np.maximum(present.sum(axis=1, keepdims=True), 1)
        local = vocab.local_ids(keys)
        ids.append(np.where(present, offset + local, 0))
        values.append(present / n)  # mean pooling
      else:
        ids.append((offset + vocab.local_ids(keys))[:, None])
        values.append(np.ones((column.shape[0], 1)))
    return (np.concatenate(ids, axis=1).astype(np.int32),
            np.concatenate(values, axis=1).astype(np.float32))


def _fit_width(keys: np.ndarray, width: int) -> np.ndarray:
  """(N, L) -> (N, width): truncate or pad with ''."""
  keys = keys.reshape(keys.shape[0], -1)
  if keys.shape[1] >= width:
    return keys[:, :width]
  pad = np.full((keys.shape[0], width - keys.shape[1]), "", keys.dtype)
  return np.concatenate([keys, pad], axis=1)


def fit(fields: list[Field] | tuple[Field, ...], columns: dict) -> Encoder:
  """Fits every field's vocabulary on the (training) `columns`."""
  names = [f.name for f in fields]
  if len(set(names)) != len(names):
    raise ValueError(f"field names repeat: {names}")
  return Encoder(tuple(fit_vocab(f, columns[f.name]) for f in fields))


@dataclasses.dataclass(frozen=True)
class CTRData:
  """Encoded examples: ids (N, S) int32, values (N, S) float32, labels (N,)
  float32 in {0, 1}."""

  ids: np.ndarray
  values: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def take(self, rows: np.ndarray) -> "CTRData":
    return CTRData(self.ids[rows], self.values[rows], self.labels[rows])


def epoch_batches(data: CTRData, batch_size: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One shuffled epoch stacked as {ids (S, B, slots), values, labels (S, B)}.

  Every example appears once; the last batch is topped up with the first
  examples of the permutation (cyclically) so that all S = ceil(N / B)
  steps share one shape.
  """
  n = len(data)
  steps = -(-n // batch_size)
  order = np.resize(rng.permutation(n), (steps, batch_size))
  return {"ids": data.ids[order], "values": data.values[order],
          "labels": data.labels[order]}
