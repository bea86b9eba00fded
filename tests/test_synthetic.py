"""Planted low-rank implicit feedback."""

import numpy as np
import pytest

from jaxrec.data.synthetic import planted, planted_model


def _arrays(data):
  return (data.users, data.items, data.ratings, data.timestamps)


def test_same_seed_same_data_other_seed_differs():
  a, b, c = planted(seed=3), planted(seed=3), planted(seed=4)
  for x, y in zip(_arrays(a), _arrays(b)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.items, c.items)


def test_shape_ids_and_no_duplicates():
  data = planted(n_users=50, n_items=40, per_user=7, seed=1)
  assert len(data) == 350 and (data.n_users, data.n_items) == (50, 40)
  assert data.users.dtype == np.int32 and data.items.dtype == np.int32
  assert data.users.min() == 1 and data.users.max() == 50
  assert data.items.min() >= 1 and data.items.max() <= 40
  assert np.bincount(data.users).tolist() == [0] + [7] * 50
  pairs = data.users.astype(np.int64) * 1000 + data.items
  assert np.unique(pairs).size == len(data)
  np.testing.assert_array_equal(data.ratings, np.ones(350, np.float32))


def test_timestamps_unique_and_sorted_within_user():
  data = planted(seed=2)
  assert data.timestamps.dtype == np.int64
  assert np.unique(data.timestamps).size == len(data)
  key = data.users.astype(np.int64) * len(data) + data.timestamps
  assert np.all(np.diff(key) > 0)  # sorted by user, then time


def _heldout_percentile(data, scores):
  """Mean rank percentile (0 = first) of each user's last item, train masked."""
  users, k = data.n_users, len(data) // data.n_users
  items = data.items.reshape(users, k) - 1
  train, test = items[:, :-1], items[:, -1]
  scores = np.array(scores, np.float64)
  rows = np.arange(users)[:, None]
  scores[rows, train] = -np.inf
  above = (scores > scores[rows[:, 0], test][:, None]).sum(axis=1)
  return float(np.mean(above / (data.n_items - k)))


def test_signal_is_planted_and_beats_popularity():
  data = planted(seed=0)
  model = planted_model(seed=0)
  affinity = _heldout_percentile(data, model.affinity()[1:, 1:])
  logits = _heldout_percentile(data, model.logits()[1:, 1:])
  train = data.items.reshape(data.n_users, -1)[:, :-1]
  counts = np.bincount(train.ravel(), minlength=data.n_items + 1)[1:]
  popular = _heldout_percentile(data, np.tile(counts, (data.n_users, 1)))
  assert affinity < 0.3  # chance is 0.5
  assert popular < 0.4  # popularity carries signal ...
  assert logits < popular - 0.05  # ... but the planted model does better


def test_popularity_skews_item_counts():
  def top_share(popularity):
    counts = np.sort(planted(seed=0, popularity=popularity).item_counts())
    return counts[-20:].sum() / counts.sum()  # top 10% of 200 items
  assert top_share(1.0) > 0.25 > top_share(0.0)


def test_zero_noise_takes_each_users_top_items():
  data = planted(n_users=20, n_items=30, per_user=5, noise=0.0, seed=5)
  logits = planted_model(n_users=20, n_items=30, seed=5).logits()[1:, 1:]
  best = np.sort(np.argsort(-logits, axis=1)[:, :5] + 1, axis=1)
  got = np.sort(data.items.reshape(20, 5), axis=1)
  np.testing.assert_array_equal(got, best)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="per_user"):
    planted(n_items=10, per_user=11)
  with pytest.raises(ValueError, match="noise"):
    planted(noise=-1.0)
  with pytest.raises(ValueError, match="dim"):
    planted_model(dim=0)
