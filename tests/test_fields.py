"""Field schema, vocabularies, bucketing, hashing and the batch layout."""

import math

import numpy as np
import pytest

from jaxrec.data import fields
from jaxrec.data.negatives import epoch_rng


def test_criteo_bucket_matches_the_rule_value_by_value():
  xs = [np.nan, -3, -1, 0, 1, 2, 2.5, 3, 7, 55, 100, 5775, 23159456]
  got = fields.criteo_bucket(np.array(xs, float))
  for x, g in zip(xs, got):
    if math.isnan(x):
      assert math.isnan(g)
    else:  # BARS/FuxiCTR: int(floor(ln(x) ** 2)) if x > 2 else int(x)
      assert g == (math.floor(math.log(x) ** 2) if x > 2 else int(x))


def test_vocab_keeps_frequent_values_and_maps_the_rest_to_oov():
  schema = [fields.Field("a", min_count=2), fields.Field("b")]
  train = {"a": np.array(["x", "y", "x", "z", "y", "x"]),
           "b": np.array([5, 6, 5, 5, 7, 7])}
  enc = fields.fit(schema, train)
  layout = enc.layout
  # a keeps x, y (z is seen once): ids OOV, x, y; b keeps 5, 6, 7.
  assert layout.sizes == (3, 4) and layout.offsets == (1, 4)
  assert layout.n_features == 8 and layout.slot_fields == (0, 1)
  ids, values = enc.encode({"a": np.array(["x", "y", "z", "w"]),
                            "b": np.array([7, 6, 5, 9])})
  np.testing.assert_array_equal(ids[:, 0], [2, 3, 1, 1])  # z, w -> OOV
  np.testing.assert_array_equal(ids[:, 1], [7, 6, 5, 4])  # 9 -> OOV
  assert (ids > 0).all()  # 0 is padding only
  np.testing.assert_array_equal(values, np.ones((4, 2)))


def test_vocab_is_fitted_on_the_given_rows_only():
  enc = fields.fit([fields.Field("a")], {"a": np.array(["x"])})
  ids, _ = enc.encode({"a": np.array(["x", "test_only"])})
  assert ids[1, 0] == enc.layout.offsets[0]  # unseen in train -> OOV


def test_multi_hot_pads_with_zero_and_mean_pools():
  schema = [fields.Field("u"), fields.Field("g", "multi_hot", max_len=3)]
  cols = {"u": np.array([1, 2]),
          "g": np.array([["a", "b", ""], ["c", "", ""]])}
  enc = fields.fit(schema, cols)
  ids, values = enc.encode(cols)
  assert enc.layout.slot_fields == (0, 1, 1, 1)
  assert ids.shape == (2, 4) and ids[1, 2] == ids[1, 3] == 0
  np.testing.assert_allclose(values[0], [1, .5, .5, 0])
  np.testing.assert_allclose(values[1], [1, 1, 0, 0])


def test_hashing_is_stable_and_in_range():
  field = fields.Field("h", hash_buckets=7)
  enc = fields.fit([field], {"h": np.array(["a", "b"])})
  keys = np.array([f"k{i}" for i in range(200)] + [""])
  ids, _ = enc.encode({"h": keys})
  again, _ = fields.fit([field], {"h": np.array(["zzz"])}).encode({"h": keys})
  np.testing.assert_array_equal(ids, again)  # independent of the fit rows
  off = enc.layout.offsets[0]
  assert enc.layout.sizes == (8,)
  assert ((ids[:-1] >= off + 1) & (ids[:-1] <= off + 7)).all()
  assert ids[-1, 0] == off  # missing -> OOV
  assert len(np.unique(ids[:-1])) == 7  # 200 keys use every bucket


def test_numeric_bucketised_or_valued():
  schema = [fields.Field("n"), fields.Field("n", kind="numeric")]
  with pytest.raises(ValueError, match="repeat"):
    fields.fit(schema, {"n": np.zeros(2)})
  schema = [fields.Field("b", "numeric"),
            fields.Field("v", "numeric", bucketize=False)]
  cols = {"b": np.array([1.0, 100.0, 105.0, np.nan]),
          "v": np.array([0.5, 2.0, np.nan, 3.0])}
  enc = fields.fit(schema, cols)
  ids, values = enc.encode(cols)
  # 100 and 105 share bucket floor(ln^2) = 21; NaN is missing -> OOV.
  assert ids[1, 0] == ids[2, 0] != ids[0, 0]
  assert ids[3, 0] == enc.layout.offsets[0]
  assert (ids[:, 1] == enc.layout.offsets[1]).all()  # one weighted feature
  np.testing.assert_allclose(values[:, 1], [0.5, 2.0, 0.0, 3.0])


def test_epoch_batches_cover_every_example_and_replay():
  n, b = 10, 4
  data = fields.CTRData(np.arange(n)[:, None].astype(np.int32),
                        np.ones((n, 1), np.float32),
                        np.arange(n).astype(np.float32))
  batches = fields.epoch_batches(data, b, epoch_rng(0, 3))
  assert batches["ids"].shape == (3, 4, 1) and batches["labels"].shape == (3, 4)
  seen = batches["ids"].ravel()
  assert set(seen) == set(range(n))  # 2 repeats top up the last batch
  np.testing.assert_array_equal(batches["labels"].ravel(), seen)  # aligned
  again = fields.epoch_batches(data, b, epoch_rng(0, 3))
  np.testing.assert_array_equal(again["ids"], batches["ids"])
  other = fields.epoch_batches(data, b, epoch_rng(0, 4))
  assert not np.array_equal(other["ids"], batches["ids"])
