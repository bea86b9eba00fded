"""CTR file readers, Frappe_x1 and MovieLens-1M as CTR."""

from pathlib import Path

import numpy as np
import pytest

from jaxrec.data import ctr, ctr_datasets, fields
from jaxrec.data.errors import DataFormatError

SAMPLES = Path(__file__).resolve().parents[2] / "shared/data/ctr-samples"


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_libfm_reads_labels_ids_values_with_padding(tmp_path):
  path = _write(tmp_path, "a.libfm", "-1 3:1 7:0.5\n1 0:2\n+1\n0 9:1e-1 2:1 4:1\n")
  rows = ctr.read_libfm(path)
  np.testing.assert_array_equal(rows.labels, [0, 1, 1, 0])
  np.testing.assert_array_equal(
      rows.features, [[3, 7, -1], [0, -1, -1], [-1, -1, -1], [9, 2, 4]])
  np.testing.assert_allclose(
      rows.values, [[1, .5, 0], [2, 0, 0], [0, 0, 0], [.1, 1, 1]])
  assert rows.fields is None


def test_libffm_reads_fields(tmp_path):
  path = _write(tmp_path, "a.ffm", "1 0:5:0.3 2:8:1\n0 1:6:2\n")
  rows = ctr.read_libffm(path)
  np.testing.assert_array_equal(rows.fields, [[0, 2], [1, -1]])
  np.testing.assert_array_equal(rows.features, [[5, 8], [6, -1]])
  np.testing.assert_allclose(rows.values, [[.3, 1], [2, 0]])


@pytest.mark.parametrize("reader,text,line,what", [
    (ctr.read_libfm, "1 1:1\n1 2:x\n", 2, "does not parse"),
    (ctr.read_libfm, "1 1:1\n0 2:1\n2 3:1\n", 3, "label '2'"),
    (ctr.read_libfm, "1 1:1\n\n1 2:1\n", 2, "does not parse"),
    (ctr.read_libffm, "1 0:1:1\n1 2:1\n", 2, "does not parse"),
])
def test_malformed_lines_name_file_and_line(tmp_path, reader, text, line,
                                            what):
  path = _write(tmp_path, "bad.txt", text)
  with pytest.raises(DataFormatError, match=f"bad.txt:{line}: .*{what}"):
    reader(path)


def test_libfm_columns_need_one_feature_per_field(tmp_path):
  rows = ctr.read_libfm(_write(tmp_path, "f.libfm", "1 0:1 5:1\n0 1:1\n"))
  with pytest.raises(DataFormatError, match="f.libfm:2: got 1 features"):
    ctr.libfm_columns(rows, ("a", "b"), tmp_path / "f.libfm")


def _criteo_line(label, ints, cats):
  return "\t".join([label] + ints + cats)


def test_criteo_tsv_missing_values_and_bad_lines(tmp_path):
  ints = ["1", "", "250"] + ["0"] * 10
  cats = ["05db9164", ""] + ["a"] * 24
  path = _write(tmp_path, "c.tsv", _criteo_line("1", ints, cats) + "\n" +
                _criteo_line("0", ["3"] * 13, ["b"] * 26) + "\n")
  cols = ctr.read_criteo(path)
  np.testing.assert_array_equal(cols["label"], [1, 0])
  assert np.isnan(cols["I2"][0]) and cols["I3"][0] == 250
  assert cols["C1"][0] == "05db9164" and cols["C2"][0] == ""
  enc = fields.fit(ctr.criteo_fields(min_count=1), cols)
  ids, _ = enc.encode(cols)
  assert ids.shape == (2, 39) and (ids > 0).all()
  bad = _write(tmp_path, "bad.tsv", _criteo_line("1", ints, cats) + "\n" +
               _criteo_line("1", ["x"] + ints[1:], cats) + "\n")
  with pytest.raises(DataFormatError, match="bad.tsv:2: I1 'x'"):
    ctr.read_criteo(bad)
  short = _write(tmp_path, "short.tsv", "1\t2\n")
  with pytest.raises(DataFormatError, match="short.tsv:1: got 2 fields"):
    ctr.read_criteo(short)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared CTR samples absent")
def test_shared_samples_parse():
  cols = ctr.read_criteo(SAMPLES / "deepctr/criteo_sample.txt", sep=",",
                         header=True)
  assert cols["label"].shape == (200,) and cols["C26"].shape == (200,)
  rows = ctr.read_libffm(SAMPLES / "xlearn-criteo/small_train.txt")
  assert len(rows) == 200 and rows.fields.max() < 40
  assert 0.2 < rows.labels.mean() < 0.3  # about 24% positive


def _ml1m_fixture(root: Path):
  folder = root / "movielens-1m"
  (folder / "ratings_5fold_uir").mkdir(parents=True)
  (folder / "users.dat").write_text(
      "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
  (folder / "movies.dat").write_text(
      "1::Toy Story (1995)::Animation|Children's|Comedy\n"
      "5::Heat (1995)::Action|Crime|Thriller\n10::Sabrina (1995)::Comedy\n")
  rng = np.random.default_rng(0)
  pairs = [(u, m) for u in (1, 2, 3) for m in (1, 5, 10)]
  for k in range(5):
    lines = [f"{u},{m},{rng.integers(1, 6)}" for u, m in pairs[k::5]]
    (folder / f"ratings_5fold_uir/test_1m{k + 1}.dat").write_text(
        "\n".join(lines) + "\n")


def test_ml1m_ctr_fields_labels_and_split(tmp_path):
  _ml1m_fixture(tmp_path)
  ds, feats = ctr_datasets.load_ml1m_ctr(tmp_path, split_seed=0)
  assert ds.layout.field_names == ("user", "movie", "gender", "age",
                                   "occupation", "zip", "genres")
  assert ds.layout.slot_fields == (0, 1, 2, 3, 4, 5) + (6,) * 6
  sizes = {r: len(d) for r, d in ds.roles.items()}
  assert sum(sizes.values()) == 9 and sizes["train"] == 7
  # Encoded pairs carry the movie's genres and the user's features.
  ids, values = feats.encode_pairs(np.array([1]), np.array([1]))
  assert (ids[0, 6:9] > 0).all() and (ids[0, 9:] == 0).all()
  np.testing.assert_allclose(values[0, 6:9], [1 / 3] * 3)
  cols = feats.columns(np.array([2, 1]), np.array([10, 5]))
  assert list(cols["genres"][0]) == ["Comedy"] + [""] * 5
  assert list(cols["genres"][1][:3]) == ["Action", "Crime", "Thriller"]
  assert cols["zip"][0] == "70072" and cols["age"][1] == 1
  with pytest.raises(ValueError, match="movie ids not in movies.dat"):
    feats.columns(np.array([1]), np.array([2]))
  other, _ = ctr_datasets.load_ml1m_ctr(tmp_path, split_seed=1)
  assert not all(np.array_equal(other.roles[r].ids, ds.roles[r].ids)
                 for r in ("train", "test"))


def test_ml1m_ctr_labels_are_rating_at_least_4(tmp_path):
  _ml1m_fixture(tmp_path)
  ds, feats = ctr_datasets.load_ml1m_ctr(tmp_path)
  ratings = {}
  for k in range(1, 6):
    for line in (tmp_path / f"movielens-1m/ratings_5fold_uir/test_1m{k}.dat"
                 ).read_text().split():
      u, m, r = map(int, line.split(","))
      ratings[(u, m)] = r
  users, movies = zip(*ratings)
  ids, _ = feats.encode_pairs(np.array(users), np.array(movies))
  want = {tuple(row): float(ratings[p] >= 4) for row, p in zip(ids, ratings)}
  for data in ds.roles.values():
    for row, label in zip(data.ids, data.labels):
      assert want[tuple(row)] == label


def test_frappe_valid_split_encodes_ten_one_hot_fields(tmp_path):
  folder = tmp_path / ctr_datasets.FRAPPE_FOLDER
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  offsets = np.cumsum([0, 5, 6, 2, 2, 2, 2, 2, 2, 2, 2])
  def lines(n):
    out = []
    for _ in range(n):
      feats = [rng.integers(offsets[j], offsets[j + 1]) for j in range(10)]
      out.append(" ".join([rng.choice(["1", "-1"])] +
                          [f"{f}:1" for f in feats]))
    return "\n".join(out) + "\n"
  (folder / "frappe.validation.libfm").write_text(lines(50))
  (folder / "frappe.test.libfm").write_text(lines(20))
  ds = ctr_datasets.load_frappe_x1(tmp_path, train="valid-split")
  assert {r: len(d) for r, d in ds.roles.items()} == {
      "train": 40, "valid": 10, "test": 20}
  assert ds.layout.slot_fields == tuple(range(10))
  for d in ds.roles.values():
    assert ((d.ids >= np.array(ds.layout.offsets)) &
            (d.ids < np.array(ds.layout.offsets) + ds.layout.sizes)).all()
    assert set(np.unique(d.labels)) <= {0.0, 1.0}
