"""Negative samplers: never a positive, right distribution, frozen eval sets."""

import numpy as np
import pytest

from jaxrec.data import evalsets, negatives, splits, synthetic
from jaxrec.data.interactions import Interactions
from jaxrec.train import loop, tasks


def _positives(rng, n_users=40, n_items=30, density=0.5):
  mask = rng.random((n_users + 1, n_items + 1)) < density
  mask[0] = False
  mask[:, 0] = False
  mask[1, 1:] = True          # user 1 has every item but one
  mask[1, 7] = False
  users, items = np.nonzero(mask)
  return negatives.PositiveSets.build(users, items, n_users, n_items), mask


def test_uniform_never_returns_a_positive_and_is_uniform_over_the_rest():
  rng = np.random.default_rng(0)
  pos, mask = _positives(rng)
  users = rng.integers(1, 41, 200_000)
  got = negatives.sample_uniform(users, pos, np.random.default_rng(1))
  assert not mask[users, got].any()
  assert got.min() >= 1 and got.max() <= 30
  assert np.all(got[users == 1] == 7)
  # Counts per (user, item) match 1 / n_free within sampling error.
  u = 5
  counts = np.bincount(got[users == u], minlength=31)[1:]
  free = ~mask[u, 1:]
  expected = (users == u).sum() / free.sum()
  assert np.all(counts[~free] == 0)
  assert np.allclose(counts[free], expected, rtol=0.25)


def test_sample_any_is_uniform_over_every_item_positives_included():
  rng = np.random.default_rng(0)
  pos, mask = _positives(rng)
  users = np.full(120_000, 1)      # user 1 has every item but item 7
  got = negatives.sample_any(users, pos.n_items, np.random.default_rng(3))
  assert got.dtype == np.int32 and got.shape == users.shape
  counts = np.bincount(got, minlength=31)
  assert counts[0] == 0            # never the padding id
  assert np.allclose(counts[1:], users.size / 30, rtol=0.05)
  assert mask[users, got].mean() > 0.9   # positives come back as negatives


def test_sampler_modes_and_a_misnamed_mode():
  rng = np.random.default_rng(0)
  pos, mask = _positives(rng)
  users, items = np.nonzero(mask)
  train = Interactions(users.astype(np.int32), items.astype(np.int32),
                       n_users=40, n_items=30)
  draw = np.full(20_000, 5)
  for name, positives_drawn in (("uniform", False), ("popularity", False),
                                ("uniform-all", True)):
    got = loop._sampler(name, pos, train)(draw, np.random.default_rng(4))
    assert mask[draw, got].any() == positives_drawn, name
  with pytest.raises(ValueError, match="negative_sampling='uniform_all'"):
    loop._sampler("uniform_all", pos, train)
  with pytest.raises(ValueError, match="no weights"):
    tasks.NegativeSampler(pos, np.ones(31), exclude_positives=False)


def test_weighted_follows_weights_restricted_to_non_positives():
  rng = np.random.default_rng(0)
  pos, mask = _positives(rng)
  weights = np.r_[0.0, np.arange(1, 31, dtype=float)]
  users = np.full(100_000, 3)
  got = negatives.sample_weighted(users, pos, weights,
                                  np.random.default_rng(2))
  assert not mask[users, got].any()
  free = ~mask[3]
  p = np.where(free, weights, 0) / np.where(free, weights, 0).sum()
  freq = np.bincount(got, minlength=31) / got.size
  assert np.abs(freq - p).max() < 0.01


def test_distinct_negatives_are_distinct_and_free():
  rng = np.random.default_rng(0)
  pos, mask = _positives(rng)
  users = np.arange(2, 41)
  got = negatives.distinct_negatives(users, pos, 5, np.random.default_rng(3),
                                     block=64)  # forces several blocks
  assert got.shape == (39, 5)
  assert not mask[users[:, None], got].any()
  assert all(len(set(row)) == 5 for row in got.tolist())
  # Rows sorted: the frozen files' digest must not depend on the order
  # argpartition returns, which varies between numpy builds and CPUs.
  assert (np.diff(got, axis=1) > 0).all()
  with pytest.raises(ValueError, match="non-positive"):
    negatives.distinct_negatives(np.array([1]), pos, 2, rng)


def test_sampling_is_seeded_by_seed_and_epoch():
  rng = np.random.default_rng(0)
  pos, _ = _positives(rng)
  users = rng.integers(2, 41, 1000)
  draw = lambda s, e: negatives.sample_uniform(users, pos,
                                               negatives.epoch_rng(s, e))
  assert np.array_equal(draw(0, 1), draw(0, 1))
  assert not np.array_equal(draw(0, 1), draw(0, 2))
  assert not np.array_equal(draw(0, 1), draw(1, 1))


def test_user_with_every_item_is_a_clear_error():
  pos = negatives.PositiveSets.build(np.array([1, 1]), np.array([1, 2]), 1, 2)
  with pytest.raises(ValueError, match="all 2 items"):
    negatives.sample_uniform(np.array([1]), pos, np.random.default_rng(0))


def test_eval_negatives_are_frozen_hashed_and_checked(tmp_path):
  data = synthetic.planted(n_users=60, n_items=80, per_user=12, seed=0)
  split = splits.leave_one_out(data, by="random", seed=0)
  build = lambda: evalsets.leave_one_out_sets(
      split, n_negatives=20, sampling="popularity", seed=0,
      cache_dir=tmp_path)
  sets, label, digest = build()
  assert label == "sampled-popularity-20"
  again, _, digest2 = build()           # read back, not redrawn
  assert digest == digest2
  np.testing.assert_array_equal(sets["test"].negatives,
                                again["test"].negatives)
  everything = set(zip(data.users.tolist(), data.items.tolist()))
  for s in sets.values():
    cand = s.candidates()
    assert np.array_equal(cand[:, 0], s.targets)
    for u, row in zip(s.users.tolist(), s.negatives.tolist()):
      assert not any((u, i) in everything for i in row)
  # Test exclusions hold train + validation items, never the test item.
  t = sets["test"]
  for j, u in enumerate(t.users[:10].tolist()):
    excl = set(t.exclude_items[t.exclude_indptr[j]:t.exclude_indptr[j + 1]])
    want = set(split.train.items[split.train.users == u].tolist()) | set(
        split.valid.items[split.valid.users == u].tolist())
    assert excl == want and t.targets[j] not in excl
  # A tampered file is refused with its name.
  path = next(tmp_path.glob("*.npz"))
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  arrays["test"][0, 0] += 1
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=path.name):
    build()
