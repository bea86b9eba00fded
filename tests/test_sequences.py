"""Sequence data: SASRec-format loader, k-core, leave-one-out, padding,
packing and the SASRec / BERT4Rec batch builders, against brute force."""

import numpy as np
import pytest

from jaxrec.data import negatives, sequences
from jaxrec.data.errors import DataFormatError


def _write(path, pairs):
  path.write_text("".join(f"{u} {i}\n" for u, i in pairs))
  return path


def test_load_sasrec_keeps_each_users_file_order(tmp_path):
  pairs = [(2, 5), (1, 3), (2, 1), (1, 7), (1, 2), (2, 9)]
  data = sequences.load_sasrec(_write(tmp_path / "x.txt", pairs), "x")
  assert (data.n_users, data.n_items, len(data)) == (2, 9, 6)
  seqs = sequences.user_sequences(data)
  assert seqs.items[seqs.indptr[1]:seqs.indptr[2]].tolist() == [3, 7, 2]
  assert seqs.items[seqs.indptr[2]:seqs.indptr[3]].tolist() == [5, 1, 9]


@pytest.mark.parametrize("text, line, what", [
    ("1 2\n1 3 4\n", 2, "fields"), ("1 2\n2 x\n", 2, "not an integer"),
    ("1 2\n0 3\n", 2, "user id 0")])
def test_load_sasrec_names_file_and_line(tmp_path, text, line, what):
  path = tmp_path / "bad.txt"
  path.write_text(text)
  with pytest.raises(DataFormatError, match=f"bad.txt:{line}: .*{what}"):
    sequences.load_sasrec(path)


def _k_core_reference(pairs, k):
  pairs = list(pairs)
  while True:
    users = {u: sum(1 for a, _ in pairs if a == u) for u, _ in pairs}
    items = {i: sum(1 for _, b in pairs if b == i) for _, i in pairs}
    kept = [(u, i) for u, i in pairs if users[u] >= k and items[i] >= k]
    if len(kept) == len(pairs):
      return kept
    pairs = kept


def test_k_core_matches_iterated_brute_force(tmp_path):
  rng = np.random.default_rng(0)
  pairs = [(int(u), int(i)) for u, i in zip(rng.integers(1, 40, 400),
                                            rng.integers(1, 30, 400))]
  data = sequences.load_sasrec(_write(tmp_path / "k.txt", pairs))
  core = sequences.k_core(data, 5)
  ref = _k_core_reference(pairs, 5)
  assert len(core) == len(ref) > 0
  # Renumbered 1..n; the raw ids map back to exactly the reference pairs.
  assert core.items.max() == core.n_items == len({i for _, i in ref})
  raw = [int(core.item_raw_ids[i]) for i in core.items]
  assert sorted(raw) == sorted(i for _, i in ref)
  assert np.bincount(core.users)[1:].min() >= 5
  assert np.bincount(core.items)[1:].min() >= 5


def test_leave_one_out_holds_out_the_last_two_in_time(tmp_path):
  pairs = [(1, 1), (2, 4), (1, 2), (2, 5), (1, 3), (3, 6), (3, 7), (1, 8),
           (2, 9)]
  split = sequences.leave_one_out(
      sequences.load_sasrec(_write(tmp_path / "l.txt", pairs)))
  as_dict = lambda part: dict(zip(part.users.tolist(), part.items.tolist()))
  assert as_dict(split.test) == {1: 8, 2: 9}
  assert as_dict(split.valid) == {1: 3, 2: 5}
  assert split.n_dropped_users == 1                  # user 3: two actions
  inputs = sequences.eval_inputs(split, max_len=4)
  assert inputs["valid"][1].tolist() == [0, 0, 1, 2]
  assert inputs["test"][1].tolist() == [0, 1, 2, 3]  # includes valid item
  assert inputs["test"][3].tolist() == [0, 0, 6, 7]  # train-only user
  assert not inputs["valid"][0].any()


def test_movielens_sequences_follow_timestamps(tmp_path):
  folder = tmp_path / "movielens-100k"
  folder.mkdir()
  rows = [(1, 10, 5, 300), (1, 11, 3, 100), (1, 12, 4, 200), (1, 13, 4, 200),
          (2, 10, 1, 50)]
  (folder / "u.data").write_text(
      "".join("\t".join(map(str, r)) + "\n" for r in rows))
  split = sequences.leave_one_out(sequences.load("ml-100k", tmp_path))
  # Times 100, 200, 200, 300; the tie keeps file order (12 before 13).
  assert split.test.items.tolist() == [10]
  assert split.valid.items.tolist() == [13]
  assert sorted(split.train.items.tolist()) == [10, 11, 12]


def test_left_pad_matches_brute_force():
  rng = np.random.default_rng(1)
  lens = rng.integers(0, 9, 20)
  seqs = sequences.UserSequences(np.r_[0, 0, np.cumsum(lens)],
                                 rng.integers(1, 99, lens.sum()).astype(
                                     np.int32))
  users = rng.integers(0, 21, 15)
  got = sequences.left_pad(seqs, users, 5)
  for row, u in zip(got, users):
    items = seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]].tolist()[-5:]
    assert row.tolist() == [0] * (5 - len(items)) + items


def test_packed_epoch_places_every_sequence_once_without_overlap():
  rng = np.random.default_rng(2)
  lengths = np.r_[0, rng.integers(1, 9, 50)]
  users = np.arange(1, 51)
  rows = sequences.rows_needed(lengths, users, 10)
  steps = 4
  p = sequences.packed_epoch(users, lengths, 10, steps, -(-rows // steps) + 1,
                             rng)
  assert p.dropped == 0
  cells = np.stack([p.step, p.row, p.col], 1)
  assert np.unique(cells, axis=0).shape[0] == p.t.size   # no overlap
  assert (p.col < 10).all()
  # Every user is placed (the grid's spare rows repeat the first ones) and
  # each placement is its whole sequence, contiguous, in order.
  assert set(p.user.tolist()) == set(users.tolist())
  for seg in np.unique(p.segment):
    at = p.segment == seg
    assert p.t[at].tolist() == list(range(lengths[p.user[at][0]]))
    assert np.unique(p.row[at]).size == 1
    assert np.diff(p.col[at]).tolist() == [1] * (at.sum() - 1)


def _fixture_split(tmp_path, seed=3):
  rng = np.random.default_rng(seed)
  pairs = []
  for u in range(1, 41):
    k = rng.integers(1, 15)
    pairs += [(u, int(i)) for i in rng.choice(np.arange(1, 31), k,
                                              replace=False)]
  return sequences.leave_one_out(
      sequences.load_sasrec(_write(tmp_path / "f.txt", pairs)))


def test_next_item_batches_targets_and_negatives(tmp_path):
  split = _fixture_split(tmp_path)
  train = sequences.user_sequences(split.train)
  width = 6
  table = sequences.left_pad(train, np.arange(41), width + 1)
  lengths = np.minimum(train.lengths(), width + 1) - 1
  users = np.flatnonzero(lengths >= 1)
  pos_sets = negatives.PositiveSets.build(split.train.users,
                                          split.train.items, 40, 30)
  rng = np.random.default_rng(0)
  packing = sequences.packed_epoch(users, lengths, width, 3, 20, rng)
  b = sequences.next_item_batches(table, packing, pos_sets, rng)
  seg = b["segment"]
  for s, r in zip(*np.nonzero(seg.any(-1))):
    for sid in np.unique(seg[s, r][seg[s, r] > 0]):
      at = seg[s, r] == sid
      user = packing.user[packing.segment == sid][0]
      items = train.items[train.indptr[user]:train.indptr[user + 1]]
      items = items[-(width + 1):].tolist()
      assert b["seq"][s, r][at].tolist() == items[:-1]
      assert b["pos"][s, r][at].tolist() == items[1:]
      assert b["position"][s, r][at].tolist() == list(
          range(width - at.sum(), width))
      # The sampler never returns one of the user's own training items.
      assert not set(b["neg"][s, r][at].tolist()) & set(
          train.items[train.indptr[user]:train.indptr[user + 1]].tolist())
      assert (b["neg"][s, r][at] >= 1).all()
  assert ((b["pos"] == 0) == (b["seq"] == 0)).all()
  assert ((b["neg"] == 0) == (b["seq"] == 0)).all()


def test_masked_item_batches_follow_the_cloze_rules(tmp_path):
  split = _fixture_split(tmp_path, seed=4)
  train = sequences.user_sequences(split.train)
  width, mask_id = 8, 31
  table = sequences.left_pad(train, np.arange(41), width)
  lengths = np.minimum(train.lengths(), width)
  users = np.flatnonzero(lengths >= 1)
  rng = np.random.default_rng(5)
  packing = sequences.packed_epoch(users, lengths, width, 2, 20, rng)
  b = sequences.masked_item_batches(table, packing, rng, mask_prob=0.5,
                                    mask_id=mask_id, mask_last_share=0.3,
                                    budget=200)
  seq, w = b["seq"], b["weights"]
  flat = seq.reshape(seq.shape[0], -1)
  n_last_only = 0
  for s in range(seq.shape[0]):
    hit = b["positions"][s][w[s] > 0]
    assert (flat[s][hit] == mask_id).all()
    assert (flat[s] == mask_id).sum() == hit.size     # nothing else masked
  original = packing.grid(table[packing.user,
                                width - packing.length + packing.t])
  for s in range(seq.shape[0]):
    hit = b["positions"][s][w[s] > 0]
    assert (original.reshape(seq.shape[0], -1)[s][hit] ==
            b["labels"][s][w[s] > 0]).all()
  for sid in np.unique(packing.segment):
    at = packing.segment == sid
    k = packing.length[at][0]
    masked = seq[packing.step[at], packing.row[at], packing.col[at]] == mask_id
    want = max(1, round(0.5 * k))
    if masked.sum() == 1 and masked[-1] and want > 1:
      n_last_only += 1                               # a mask-last sample
    else:
      assert masked.sum() == want
  assert n_last_only > 0
  # A small budget caps the masks per step; unmasked items stay visible.
  b2 = sequences.masked_item_batches(table, packing, rng, mask_prob=0.5,
                                     mask_id=mask_id, mask_last_share=0.0,
                                     budget=5)
  assert b2["positions"].shape == (2, 5)
  assert ((b2["seq"] == mask_id).reshape(2, -1).sum(-1) <= 5).all()
