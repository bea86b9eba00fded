"""Session logs: reader, filters, time split, session-parallel schedule."""

import numpy as np
import pytest

from jaxrec.data import sessions as S
from jaxrec.data.errors import DataFormatError


def _write(path, rows, header=S.HEADER):
  lines = [header] + ["\t".join(str(x) for x in r) for r in rows]
  path.write_text("\n".join(lines) + "\n")
  return path


def _sessions(seqs, n_items=None):
  items = np.concatenate([np.asarray(s, np.int32) for s in seqs])
  offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
  return S.Sessions(items, offsets, n_items or int(items.max()))


def test_read_events(tmp_path):
  path = _write(tmp_path / "log.txt", [(1, 214536502, 1396860669.277),
                                       (1, 7, 1396860886.5), (2, 7, 5.0)])
  ev = S.read_events(path)
  np.testing.assert_array_equal(ev.session, [1, 1, 2])
  np.testing.assert_array_equal(ev.item, [214536502, 7, 7])
  np.testing.assert_allclose(ev.time, [1396860669.277, 1396860886.5, 5.0])


def test_read_events_errors_name_file_and_line(tmp_path):
  bad_header = _write(tmp_path / "a.txt", [(1, 2, 3.0)], header="a\tb\tc")
  with pytest.raises(DataFormatError, match=r"a\.txt:1: header"):
    S.read_events(bad_header)
  bad_item = _write(tmp_path / "b.txt", [(1, 2, 3.0), (1, "x", 4.0)])
  with pytest.raises(DataFormatError, match=r"b\.txt:3: ItemId 'x'"):
    S.read_events(bad_item)
  short = tmp_path / "c.txt"
  short.write_text(S.HEADER + "\n1\t2\t3\n1\t2\n")
  with pytest.raises(DataFormatError, match=r"c\.txt:3: got 2 fields"):
    S.read_events(short)


def _events(rows):
  s, i, t = (np.asarray(c) for c in zip(*rows))
  return S.Events(s.astype(np.int64), i.astype(np.int64),
                  t.astype(np.float64))


def test_remove_consecutive_repeats_keeps_returns():
  ev = _events([(1, 5, 0), (1, 5, 1), (1, 6, 2), (1, 5, 3), (2, 5, 4),
                (2, 5, 5)])
  out = S.remove_consecutive_repeats(ev)
  np.testing.assert_array_equal(out.item, [5, 6, 5, 5])
  np.testing.assert_array_equal(out.session, [1, 1, 1, 2])


def test_filter_frequency_and_time_split():
  rows = [(1, 1, 0), (1, 2, 1), (2, 1, 2), (2, 2, 3), (3, 9, 4), (3, 1, 5),
          (4, 1, 7), (5, 2, 100), (5, 1, 150)]
  ev = S.filter_frequency(_events(rows), min_item_support=3,
                          min_session_length=2)
  # item 9 is rare; session 3 then has one event; session 4 always did.
  assert sorted(set(ev.session.tolist())) == [1, 2, 5]
  train, test = S.time_split(ev, test_seconds=60)
  assert set(test.session.tolist()) == {5}  # ends at 150 >= 150 - 60
  assert not set(train.session.tolist()) & set(test.session.tolist())


def test_index_sessions_restricts_to_train_items_and_orders_by_start():
  train = _events([(1, 10, 0), (1, 20, 1), (2, 30, 2), (2, 10, 3)])
  index = S.ItemIndex.build(train)
  np.testing.assert_array_equal(index.raw_ids, [10, 20, 30])
  test = _events([(7, 10, 50), (7, 99, 51), (7, 20, 52), (8, 99, 9),
                  (8, 10, 10), (6, 30, 40), (6, 20, 41)])
  out = S.index_sessions(test, index)
  # session 8 loses item 99 and is then too short; 6 starts before 7.
  np.testing.assert_array_equal(out.offsets, [0, 2, 4])
  np.testing.assert_array_equal(out.items, [3, 2, 1, 2])


def _official_iterator(sessions, batch):
  """A direct transcription of the official GRU4Rec session iterator:
  yields (inputs, targets, rows' sessions) per step, with the reset rows."""
  offsets = sessions.offsets
  n = sessions.n_sessions
  iters = np.arange(batch)
  maxiter = batch - 1
  start, end = offsets[iters].copy(), offsets[iters + 1].copy()
  out = []
  reset = np.ones(batch, bool)
  while True:
    minlen = (end - start).min()
    for i in range(minlen - 1):
      out.append((sessions.items[start + i], sessions.items[start + i + 1],
                  iters.copy(), reset.copy()))
      reset[:] = False
    start = start + minlen - 1
    finished = end - start <= 1
    n_fin = finished.sum()
    iters[finished] = maxiter + np.arange(1, n_fin + 1)
    maxiter += n_fin
    valid = iters < n
    if not valid.any():
      return out
    mask = finished & valid
    start[mask] = offsets[iters[mask]]
    end[mask] = offsets[iters[mask] + 1]
    reset = finished.copy()
    # The official code shrinks the batch; track rows by position instead.
    iters, start, end, reset = (x[valid] for x in (iters, start, end, reset))


@pytest.mark.parametrize("batch", [1, 3, 4])
def test_session_parallel_matches_the_official_iterator(batch):
  rng = np.random.default_rng(0)
  seqs = [rng.integers(1, 50, size=rng.integers(2, 9)) for _ in range(23)]
  sessions = _sessions(seqs, 50)
  sched = S.session_parallel(sessions, batch)
  ref = _official_iterator(sessions, batch)
  # The official batch shrinks once sessions run out; compare the valid
  # rows, which keep their relative order.
  assert sched["inputs"].shape[0] == len(ref)
  for t, (inp, tgt, sess, rst) in enumerate(ref):
    v = sched["valid"][t]
    np.testing.assert_array_equal(sched["inputs"][t][v], inp)
    np.testing.assert_array_equal(sched["targets"][t][v], tgt)
    np.testing.assert_array_equal(sched["session"][t][v], sess)
    np.testing.assert_array_equal(sched["reset"][t][v], rst)


def test_session_parallel_covers_every_pair_once_with_resets_at_starts():
  seqs = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11, 12, 13, 14], [15, 16]]
  sessions = _sessions(seqs, 16)
  sched = S.session_parallel(sessions, 2)
  v = sched["valid"]
  pairs = sorted(zip(sched["inputs"][v], sched["targets"][v]))
  want = sorted((a, b) for s in seqs for a, b in zip(s[:-1], s[1:]))
  assert pairs == want
  for s, seq in enumerate(seqs):
    steps, rows = np.nonzero(sched["session"] == s)
    assert len(set(rows)) == 1  # one row per session
    np.testing.assert_array_equal(np.diff(steps), 1)  # consecutive steps
    np.testing.assert_array_equal(sched["inputs"][steps, rows], seq[:-1])
    assert sched["reset"][steps, rows].tolist() == [True] + [False] * (
        len(seq) - 2)
    assert sched["last"][steps, rows].tolist() == [False] * (
        len(seq) - 2) + [True]
  assert sched["reset"][~v].all() and (sched["inputs"][~v] == 0).all()


def test_load_prepared_reads_the_split_files(tmp_path):
  root = tmp_path / "session" / "toy"
  root.mkdir(parents=True)
  tr = [(1, 10, 0), (1, 20, 1), (1, 20, 2), (2, 20, 3), (2, 30, 4)]
  _write(root / "toy_train_tr.txt", tr)
  _write(root / "toy_train_full.txt", tr + [(3, 10, 5), (3, 40, 6)])
  _write(root / "toy_train_valid.txt", [(3, 10, 5), (3, 40, 6)])
  _write(root / "toy_test.txt", [(4, 30, 9), (4, 10, 10), (4, 10, 11)])
  split = S.load_prepared(tmp_path, "toy")
  assert split.train.n_events == 4  # the repeated 20 is removed
  assert split.valid.n_sessions == 0  # item 40 is unknown: too short
  np.testing.assert_array_equal(split.test.items, [3, 1])
  full = S.load_prepared(tmp_path, "toy", refit=True, dedupe=False)
  assert full.index.n_items == 4 and full.full.n_events == 7
  assert full.train.n_events == 5 and full.valid.n_sessions == 1
  with pytest.raises(FileNotFoundError,
                     match=r"session/missing/missing_train_tr"):
    S.load_prepared(tmp_path, "missing")
