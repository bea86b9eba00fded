"""Frappe train-file rebuild: encoding inference, sampler, cache, real counts.

The synthetic fixture plays the NFM authors: it writes a tiny raw log, makes
the full libfm data set their way (2 negatives per log row, drawn without
replacement from the items the user never logged), shuffles it, cuts it
70/20/10 and ships only validation and test.  The hidden train part is the
reference the rebuild is checked against.
"""

import collections
import os
from pathlib import Path

import numpy as np
import pytest

from jaxrec.data import frappe, frappe_checks
from jaxrec.data.errors import DataFormatError

CONTEXT_VALUES = (("morning", "noon", "night"), ("monday", "friday"),
                  ("workday", "weekend"), ("home", "work", "unknown"),
                  ("free", "paid"), ("sunny", "rainy"), ("Spain", "Chile"),
                  ("0", "17", "3"))


def _write_fixture(folder: Path, seed: int = 0, rule: str = "first_appearance",
                   n_users: int = 9, n_items: int = 60, n_rows: int = 120):
  """Writes raw/ and nfm_split/ under folder; returns the hidden train
  (labels (L,), ids (L, F)) and the encoding used."""
  rng = np.random.default_rng(seed)
  users = rng.permutation(n_users)[rng.integers(0, n_users, n_rows)]
  users[:n_users] = np.arange(n_users)[::-1]  # every user logs; ids unsorted
  items = rng.integers(0, 8, n_rows) * 7 % n_items  # few apps per user
  items[:n_items] = rng.permutation(n_items)  # every item appears
  context = np.array([[v[rng.integers(len(v))] for v in CONTEXT_VALUES]
                      for _ in range(n_rows)])
  # the first rows bring values in an order that is not the sorted one
  context[:3] = [[v[k % len(v)] for v in CONTEXT_VALUES] for k in (2, 1, 0)]
  raw = np.column_stack([users.astype(str), items.astype(str), context])
  raw[n_rows - 1] = raw[5]  # a duplicated log row, as in the real log
  (folder / "raw").mkdir(parents=True)
  (folder / "nfm_split").mkdir()
  cnt = rng.integers(1, 9, n_rows).astype(str)
  lines = ["\t".join(frappe.RAW_COLUMNS)] + [
      "\t".join([r[0], r[1], c, *r[2:]]) for r, c in zip(raw, cnt)]
  (folder / frappe.RAW).write_text("\n".join(lines) + "\n")
  enc = frappe.Encoding.from_order(raw, rule)
  ids = enc.encode(raw)
  negatives = []
  for u in np.unique(ids[:, 0]):
    rows = ids[ids[:, 0] == u]
    free = np.setdiff1d(np.arange(enc.offsets[1],
                                  enc.offsets[1] + enc.sizes[1]), rows[:, 1])
    drawn = rng.choice(free, 2 * len(rows), replace=False)
    neg = np.repeat(rows, 2, axis=0)
    neg[:, 1] = drawn
    negatives.append(neg)
  all_ids = np.concatenate([ids, *negatives])
  labels = np.repeat([1, -1], [len(ids), len(all_ids) - len(ids)])
  order = rng.permutation(len(all_ids))
  labels, all_ids = labels[order], all_ids[order]
  cut = [int(0.7 * len(order)), int(0.9 * len(order))]
  frappe.write_libfm(folder / frappe.VALID, labels[cut[0]:cut[1]],
                     all_ids[cut[0]:cut[1]])
  frappe.write_libfm(folder / frappe.TEST, labels[cut[1]:], all_ids[cut[1]:])
  return (labels[:cut[0]], all_ids[:cut[0]]), enc


@pytest.fixture(name="fixture")
def _fixture(tmp_path):
  hidden, enc = _write_fixture(tmp_path / "data" / "frappe")
  return tmp_path, hidden, enc


def _rows(ids):
  return collections.Counter(map(tuple, ids.tolist()))


@pytest.mark.parametrize("rule", ["first_appearance", "sorted"])
def test_infer_encoding_finds_the_planted_rule(tmp_path, rule):
  _, enc = _write_fixture(tmp_path, seed=1, rule=rule)
  raw = frappe.read_raw(tmp_path / frappe.RAW)
  positives = np.concatenate([ids[labels == 1] for labels, ids in (
      frappe.read_libfm(tmp_path / frappe.VALID),
      frappe.read_libfm(tmp_path / frappe.TEST))])
  got, got_rule = frappe.infer_encoding(raw, positives)
  assert got_rule == rule and got == enc
  assert got.offsets.tolist() == np.cumsum([0, *enc.sizes[:-1]]).tolist()
  pinned = frappe_checks.pinned_ids(got.encode(raw), positives, got)
  assert 0 < pinned["daytime"] <= 3
  # the first-appearance order puts the first row's values at each offset
  if rule == "first_appearance":
    assert (got.encode(raw[:1]) == got.offsets).all()


def test_pinned_ids_rejects_a_wrong_numbering(fixture):
  tmp_path, _, enc = fixture
  folder = tmp_path / "data" / "frappe"
  raw = frappe.read_raw(folder / frappe.RAW)
  labels, ids = frappe.read_libfm(folder / frappe.VALID)
  vocabs = list(enc.vocabs)
  vocabs[2] = (vocabs[2][1], vocabs[2][0], vocabs[2][2])  # swap 2 daytimes
  wrong = frappe.Encoding(tuple(vocabs))
  with pytest.raises(ValueError, match="daytime"):
    frappe_checks.pinned_ids(wrong.encode(raw), ids[labels == 1], enc)


def test_rebuild_matches_the_hidden_train_file(fixture):
  tmp_path, (hidden_labels, hidden_ids), enc = fixture
  path = frappe.train_file(tmp_path / "data", tmp_path / "cache", seed=3)
  labels, ids = frappe.read_libfm(path)
  assert len(labels) == len(hidden_labels)
  # positives: exactly the hidden ones (the log minus valid/test positives)
  assert _rows(ids[labels == 1]) == _rows(hidden_ids[hidden_labels == 1])
  # negatives: the same (user, context) multiset; only items are redrawn
  ctx = lambda x: _rows(np.delete(x, frappe.ITEM, axis=1))
  assert ctx(ids[labels == -1]) == ctx(hidden_ids[hidden_labels == -1])
  folder = tmp_path / "data" / "frappe"
  raw_ids = enc.encode(frappe.read_raw(folder / frappe.RAW))
  files = {"train": (labels, ids),
           "valid": frappe.read_libfm(folder / frappe.VALID),
           "test": frappe.read_libfm(folder / frappe.TEST)}
  union = frappe_checks.union_checks(raw_ids, files, enc)
  assert union["positive_rate"] == 1 / 3
  assert union["log_rows_missing_from_positives"] == 0
  assert union["positives_missing_from_log"] == 0
  assert union["contexts_without_2_negatives_per_log"] == 0
  assert union["negatives_with_item_logged_by_user"] == 0
  assert union["negatives_repeating_a_user_item"] == 0


def test_negatives_avoid_logged_and_used_items_brute_force(fixture):
  tmp_path, _, enc = fixture
  path = frappe.train_file(tmp_path / "data", tmp_path / "cache")
  folder = tmp_path / "data" / "frappe"
  raw_ids = enc.encode(frappe.read_raw(folder / frappe.RAW))
  used = collections.defaultdict(list)
  for u, i in raw_ids[:, :2].tolist():
    used[u].append(("log", i))
  for name in (frappe.VALID, frappe.TEST, path):
    labels, ids = frappe.read_libfm(folder / name)
    for u, i in ids[labels == -1][:, :2].tolist():
      used[u].append(("neg", i))
  for u, pairs in used.items():
    logged = {i for kind, i in pairs if kind == "log"}
    negs = [i for kind, i in pairs if kind == "neg"]
    assert not logged & set(negs), u
    assert len(negs) == len(set(negs)), u


def test_train_file_is_deterministic_and_cached(fixture):
  tmp_path, _, _ = fixture
  data = tmp_path / "data"
  a = frappe.train_file(data, tmp_path / "a", seed=7)
  b = frappe.train_file(data, tmp_path / "b", seed=7)
  c = frappe.train_file(data, tmp_path / "c", seed=8)
  assert a.read_bytes() == b.read_bytes() != c.read_bytes()
  recorded = a.with_suffix(".sha256").read_text().split()
  assert recorded == [frappe.sha256(a), a.name]
  stamp = a.stat().st_mtime_ns
  assert frappe.train_file(data, tmp_path / "a", seed=7) == a
  assert a.stat().st_mtime_ns == stamp  # found, not rebuilt
  original = a.read_bytes()
  a.write_bytes(original[:-20])  # a damaged cache file is rebuilt
  assert frappe.train_file(data, tmp_path / "a", seed=7).read_bytes() == (
      original)


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXREC_CACHE_DIR", str(tmp_path))
  assert frappe.default_cache_dir() == tmp_path / "frappe"
  monkeypatch.delenv("JAXREC_CACHE_DIR")
  assert frappe.default_cache_dir() == (
      Path.home() / ".cache" / "jaxrec" / "frappe")


def test_multiset_difference_brute_force():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 6, 50)
  b = rng.choice(a, 30, replace=False)  # a sub-multiset, with repeats
  keep = frappe.multiset_difference(a, b)
  assert collections.Counter(a[keep].tolist()) == (
      collections.Counter(a.tolist()) - collections.Counter(b.tolist()))
  assert frappe.multiset_difference(a, a[:0]).all()
  assert not frappe.multiset_difference(a, a).any()
  assert frappe.multiset_missing(a, np.array([7, 7, a[0]])) == 2
  with pytest.raises(ValueError, match="2 entries"):
    frappe.multiset_difference(a, np.array([7, 7]))


@pytest.mark.parametrize("line, problem", [
    ("1 0:1 1:1 2:1", "got 4 tokens"),
    ("0 0:1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1", "label '0'"),
    ("1 0:1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:2", "feature '9:2'"),
    ("1 0:1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 x:1", "feature 'x:1'"),
    ("", "got 1 tokens"),
])
def test_read_libfm_names_file_and_line(tmp_path, line, problem):
  good = "-1 0:1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1"
  path = tmp_path / "x.libfm"
  path.write_text("\n".join([good, good, line, good]) + "\n")
  with pytest.raises(DataFormatError, match=f"x.libfm:3: {problem}"):
    frappe.read_libfm(path)


def test_train_file_rejects_an_id_outside_its_field(fixture):
  tmp_path, _, enc = fixture
  path = tmp_path / "data" / "frappe" / frappe.TEST
  lines = path.read_text().splitlines()
  at = [line.startswith("1 ") for line in lines].index(True)  # a positive
  tokens = lines[at].split(" ")
  tokens[3] = f"{enc.offsets[1]}:1"  # an item id in the daytime slot
  lines[at] = " ".join(tokens)
  path.write_text("\n".join(lines) + "\n")
  expected = rf"test.libfm:{at + 1}: .*daytime id in \[{enc.offsets[2]},"
  with pytest.raises(DataFormatError, match=expected):
    frappe.train_file(tmp_path / "data", tmp_path / "cache")


def test_read_raw_names_file_and_line(tmp_path):
  path = tmp_path / "frappe.csv"
  row = "0\t0\t1\tmorning\tsunday\tweekend\tunknown\tfree\tsunny\tSpain\t0"
  path.write_text("\t".join(frappe.RAW_COLUMNS) + f"\n{row}\n{row[:-2]}\n")
  with pytest.raises(DataFormatError, match="frappe.csv:3: got 10 fields"):
    frappe.read_raw(path)
  path.write_text("user\titem\n" + row + "\n")
  with pytest.raises(DataFormatError, match="frappe.csv:1: header"):
    frappe.read_raw(path)


REAL = Path(os.environ.get("JAXREC_DATA_DIR", "/nonexistent")) / "frappe"


@pytest.mark.skipif(not REAL.is_dir(), reason="$JAXREC_DATA_DIR/frappe absent")
def test_real_frappe_counts(tmp_path):
  path = frappe.train_file(REAL.parent, tmp_path)
  labels, ids = frappe.read_libfm(path)
  assert ids.shape == (202_027, 10)
  # 96,203 logs minus the 28,599 valid/test positives
  assert (labels == 1).sum() == 67_604
  raw = frappe.read_raw(REAL / frappe.RAW)
  files = {"train": (labels, ids),
           "valid": frappe.read_libfm(REAL / frappe.VALID),
           "test": frappe.read_libfm(REAL / frappe.TEST)}
  positives = np.concatenate([i[y == 1] for y, i in list(files.values())[1:]])
  enc, rule = frappe.infer_encoding(raw, positives)
  assert rule == "first_appearance" and enc.n_features == 5382
  checks = frappe_checks.file_checks(enc.encode(raw), labels, ids, enc)
  assert checks["lines_with_every_id_in_its_field"] == 202_027
  union = frappe_checks.union_checks(enc.encode(raw), files, enc)
  assert union["lines"] == 288_609 and union["positive_rate"] == 1 / 3
  assert union["contexts_without_2_negatives_per_log"] == 0
  assert union["negatives_repeating_a_user_item"] == 0
  assert union["shared_lines"]["train&test"] == 0
