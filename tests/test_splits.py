"""Splits: protocol semantics and leakage checks."""

import numpy as np
import pytest

from jaxrec.data import splits, synthetic
from jaxrec.data.interactions import Interactions


def _log(users, items, times=None, n_users=None, n_items=None):
  users, items = np.asarray(users, np.int32), np.asarray(items, np.int32)
  return Interactions(
      users, items, n_users or int(users.max()), n_items or int(items.max()),
      timestamps=None if times is None else np.asarray(times, np.int64))


def test_loo_time_takes_last_and_second_to_last_with_file_order_ties():
  # user 1: times 5,1,9,9 -> order 1(t1),0(t5),2(t9),3(t9): file order breaks
  # the tie, so row 3 (item 4) is test and row 2 (item 3) is validation.
  data = _log([1, 1, 1, 1, 2, 2, 2], [1, 2, 3, 4, 1, 2, 3],
              [5, 1, 9, 9, 3, 2, 1])
  s = splits.leave_one_out(data, by="time")
  got = lambda part: dict(zip(part.users.tolist(), part.items.tolist()))
  assert got(s.test) == {1: 4, 2: 1}
  assert got(s.valid) == {1: 3, 2: 2}
  assert sorted(zip(s.train.users, s.train.items)) == [(1, 1), (1, 2), (2, 3)]


def test_loo_keeps_short_users_in_train_only_and_counts_them():
  data = _log([1, 1, 2, 2, 2], [1, 2, 1, 2, 3], [1, 2, 1, 2, 3])
  s = splits.leave_one_out(data, by="time")
  assert s.n_dropped_users == 1
  assert 1 not in s.test.users and 1 not in s.valid.users
  assert (s.train.users == 1).sum() == 2


def test_loo_time_without_timestamps_is_a_clear_error():
  with pytest.raises(ValueError, match="needs timestamps"):
    splits.leave_one_out(_log([1, 1, 1], [1, 2, 3]), by="time")


@pytest.mark.parametrize("by", ["time", "random"])
def test_loo_partitions_every_interaction_once(by):
  data = synthetic.planted(n_users=50, n_items=40, per_user=10, seed=1)
  s = splits.leave_one_out(data, by=by, seed=3)
  assert len(s.train) + len(s.valid) + len(s.test) == len(data)
  assert np.all(np.bincount(s.test.users, minlength=51)[1:] == 1)
  key = lambda p: set(zip(p.users.tolist(), p.items.tolist()))
  assert key(s.train) | key(s.valid) | key(s.test) == key(data)


def test_random_loo_depends_on_seed_only():
  data = synthetic.planted(n_users=50, n_items=40, per_user=10, seed=1)
  a = splits.leave_one_out(data, by="random", seed=0)
  b = splits.leave_one_out(data, by="random", seed=0)
  c = splits.leave_one_out(data, by="random", seed=1)
  assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_ratio_split_per_user_shares():
  data = synthetic.planted(n_users=30, n_items=100, per_user=20, seed=0)
  s = splits.ratio_split(data, test_ratio=0.25, valid_ratio=0.1, seed=0)
  assert np.all(np.bincount(s.test.users, minlength=31)[1:] == 5)
  assert np.all(np.bincount(s.valid.users, minlength=31)[1:] == 2)
  assert np.all(np.bincount(s.train.users, minlength=31)[1:] == 13)


def test_duplicates_collapse_to_latest_so_test_never_repeats_train():
  # user 1 consumed item 2 twice; the latest copy is the test item.
  data = _log([1, 1, 1, 1], [1, 2, 3, 2], [1, 2, 3, 4])
  s = splits.leave_one_out(data, by="time")
  assert s.test.items.tolist() == [2] and s.valid.items.tolist() == [3]
  assert s.train.items.tolist() == [1]


def test_leakage_check_catches_shared_pairs_and_time_travel():
  data = _log([1, 1, 1, 1], [1, 2, 3, 4], [1, 2, 3, 4])
  good = splits.leave_one_out(data, by="time")
  leaky = splits.Split(good.train, good.valid, good.train.select(
      np.array([0])), "loo-random")
  with pytest.raises(splits.LeakageError, match="test pairs"):
    splits.assert_no_leakage(leaky)
  # Train holds a later interaction than test: time travel.
  late = _log([1, 1], [1, 2], [1, 10], n_users=1, n_items=4)
  test = _log([1], [4], [5], n_users=1, n_items=4)
  valid = _log([1], [3], [2], n_users=1, n_items=4)
  with pytest.raises(splits.LeakageError, match="later"):
    splits.assert_no_leakage(splits.Split(late, valid, test, "loo-time"))
  # An evaluated user without training data.
  empty = _log([2], [1], [1], n_users=2, n_items=4)
  with pytest.raises(splits.LeakageError, match="no training"):
    splits.assert_no_leakage(splits.Split(empty, valid, test, "loo-random"))
