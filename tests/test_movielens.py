"""MovieLens loaders: small fixture files, malformed input, real shared data."""

import os
from pathlib import Path

import numpy as np
import pytest

from jaxrec.data import movielens
from jaxrec.data.errors import DataFormatError

U_DATA = ("196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
          "22\t377\t1\t878887116\n")


def _write(root: Path, rel: str, content: str | bytes) -> Path:
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, str):
    content = content.encode("latin-1")
  path.write_bytes(content)
  return path


def _u_data_lines(n: int) -> list[str]:
  """n valid u.data lines, user i % 50 + 1, item i % 70 + 1."""
  return [f"{i % 50 + 1}\t{i % 70 + 1}\t{i % 5 + 1}\t{880000000 + i}"
          for i in range(n)]


def test_ml100k_parses_ids_ratings_and_times(tmp_path):
  _write(tmp_path, "movielens-100k/u.data", U_DATA)
  data = movielens.load_ml100k(tmp_path)
  assert len(data) == 3 and data.name == "ml-100k"
  assert data.users.tolist() == [196, 186, 22]
  assert data.items.tolist() == [242, 302, 377]
  assert data.ratings.tolist() == [3.0, 3.0, 1.0]
  assert data.timestamps.tolist() == [881250949, 891717742, 878887116]
  assert (data.n_users, data.n_items) == (196, 377)
  assert data.users.dtype == np.int32 and data.items.dtype == np.int32
  assert data.ratings.dtype == np.float32
  assert data.timestamps.dtype == np.int64
  assert data.item_raw_ids is None


@pytest.mark.parametrize("ending", ["\n\n", "", "\r\n"])
def test_ml100k_accepts_trailing_blank_line_and_crlf(tmp_path, ending):
  text = "\n".join(_u_data_lines(10)) + ending
  if ending == "\r\n":
    text = text.replace("\n", "\r\n")
  _write(tmp_path, "movielens-100k/u.data", text)
  assert len(movielens.load_ml100k(tmp_path)) == 10


BAD_LINES = [
    ("1\t2\t3", "got 3 fields", "4 tab-separated fields user, item, rating"),
    ("1\t2\t3\t4\t5", "got 5 fields", "4 tab-separated fields"),
    ("", "got 1 fields", "4 tab-separated fields"),
    ("x\t2\t3\t4", "user 'x' is not an integer", "an integer user"),
    ("1\t2.5\t3\t4", "item '2.5' is not an integer", "an integer item"),
    ("1\t2\t3\t12:00", "timestamp '12:00' is not an integer",
     "an integer timestamp"),
    ("1\t2\t6\t4", "rating 6.0 is out of range", "a rating in [1, 5]"),
    ("1\t2\t0\t4", "rating 0.0 is out of range", "a rating in [1, 5]"),
    ("1\t2\tnan\t4", "rating nan is out of range", "a rating in [1, 5]"),
    ("1\t2\tgood\t4", "rating 'good' is not a number", "a numeric rating"),
    ("0\t2\t3\t4", "user 0 is out of range", "user ids in [1,"),
    ("1\t-3\t3\t4", "item -3 is out of range", "item ids in [1,"),
    ("1\t99999999999999999999\t3\t4", "out of range", "item"),
]


@pytest.mark.parametrize("bad, problem, expected", BAD_LINES)
@pytest.mark.parametrize("line", [2, 4000])
def test_ml100k_reports_first_bad_line(tmp_path, bad, problem, expected,
                                       line):
  lines = _u_data_lines(5000)
  lines[line - 1] = bad
  _write(tmp_path, "movielens-100k/u.data", "\n".join(lines) + "\n")
  with pytest.raises(DataFormatError) as info:
    movielens.load_ml100k(tmp_path)
  err = info.value
  assert Path(err.path).name == "u.data" and err.line == line
  assert f"u.data:{line}: " in str(err)
  assert problem in str(err) and expected in str(err)


def test_ml100k_reports_undecodable_bytes(tmp_path):
  raw = "\n".join(_u_data_lines(9)).encode() + b"\n7\t8\t\xff\t9\n"
  _write(tmp_path, "movielens-100k/u.data", raw)
  with pytest.raises(DataFormatError, match=r"u\.data:10: .*decode.*ascii"):
    movielens.load_ml100k(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file_is_an_error(tmp_path, content):
  _write(tmp_path, "movielens-100k/u.data", content)
  with pytest.raises(DataFormatError, match=r"u\.data: the file is empty"):
    movielens.load_ml100k(tmp_path)


def test_missing_file_says_how_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    movielens.load_ml100k(tmp_path)
  message = str(info.value)
  assert str(tmp_path / "movielens-100k" / "u.data") in message
  assert "fetch('ml-100k'" in message and "JAXREC_DATA_DIR" in message


def test_default_dir_comes_from_env(tmp_path, monkeypatch):
  _write(tmp_path, "movielens-100k/u.data", U_DATA)
  monkeypatch.setenv("JAXREC_DATA_DIR", str(tmp_path))
  assert len(movielens.load_ml100k()) == 3


def test_download_flag_calls_fetch(tmp_path, monkeypatch):
  calls = []

  def fake_fetch(name, root):
    calls.append((name, Path(root)))
    _write(Path(root), "movielens-100k/u.data", U_DATA)

  monkeypatch.setattr(movielens, "fetch", fake_fetch)
  assert len(movielens.load_ml100k(tmp_path, download=True)) == 3
  assert calls == [("ml-100k", tmp_path)]


RATINGS_DAT = ("1::1193::5::978300760\n1::661::3::978302109\n"
               "2::1193::4::978298413\n3::48::1::978297867\n")


def test_ml1m_ratings_dat_remaps_movies_in_ascending_order(tmp_path):
  _write(tmp_path, "movielens-1m/ratings.dat", RATINGS_DAT)
  data = movielens.load_ml1m(tmp_path)
  assert data.name == "ml-1m" and len(data) == 4
  assert data.item_raw_ids.tolist() == [-1, 48, 661, 1193]
  assert data.items.tolist() == [3, 2, 3, 1]
  assert data.item_raw_ids[data.items].tolist() == [1193, 661, 1193, 48]
  assert (data.n_users, data.n_items) == (3, 3)
  assert data.timestamps.tolist()[0] == 978300760


def _write_folds(root: Path, folds: list[str]) -> None:
  for k, text in enumerate(folds, 1):
    _write(root, f"movielens-1m/ratings_5fold_uir/test_1m{k}.dat", text)


def test_ml1m_folds_are_concatenated_without_times(tmp_path):
  _write_folds(tmp_path, [f"{k},{10 * k},{k}\n1,{k},5\n" for k in range(1, 6)])
  data = movielens.load_ml1m(tmp_path)
  assert len(data) == 10 and data.timestamps is None
  assert data.users.tolist()[:2] == [1, 1] and data.n_users == 5
  assert data.item_raw_ids.tolist() == [-1, 1, 2, 3, 4, 5, 10, 20, 30, 40, 50]
  assert data.ratings.tolist()[-2:] == [5.0, 5.0]


def test_ml1m_fold_error_names_the_fold(tmp_path):
  _write_folds(tmp_path, ["1,2,3\n"] * 2 + ["1,2,3\n4,5\n"] + ["1,2,3\n"] * 2)
  with pytest.raises(DataFormatError) as info:
    movielens.load_ml1m(tmp_path)
  assert Path(info.value.path).name == "test_1m3.dat" and info.value.line == 2
  assert "3 comma-separated fields user, item, rating" in str(info.value)


@pytest.mark.parametrize("bad, problem", [
    ("1::2::3", "got 3 fields"), ("1::2::3::4::5", "got 5 fields"),
    ("1:2::3::4::5", "user '1:2' is not an integer"),
    ("1::2::9::4", "rating 9.0 is out of range"),
    ("1::0::3::4", "item 0 is out of range")])
def test_ml1m_ratings_dat_errors(tmp_path, bad, problem):
  _write(tmp_path, "movielens-1m/ratings.dat", RATINGS_DAT + bad + "\n")
  with pytest.raises(DataFormatError, match=r"ratings\.dat:5: ") as info:
    movielens.load_ml1m(tmp_path)
  assert problem in str(info.value)


def test_ml1m_without_any_ratings_names_ratings_dat(tmp_path):
  _write(tmp_path, "movielens-1m/users.dat", "1::F::1::10::48067\n")
  with pytest.raises(FileNotFoundError, match=r"ratings\.dat.*fetch\('ml-1m'"):
    movielens.load_ml1m(tmp_path)


U_USER_2 = "1|24|M|technician|85711\n2|53|F|other|94043\n"
U_USER = U_USER_2 + "4|24|M|technician|T8H1N\n"


def test_ml100k_users_table(tmp_path):
  _write(tmp_path, "movielens-100k/u.user", U_USER)
  users = movielens.load_ml100k_users(tmp_path)
  assert len(users) == 3
  assert users.age.tolist() == [0, 24, 53, 0, 24]
  assert users.gender_vocab == ("<pad>", "F", "M")
  assert users.gender.tolist() == [0, 2, 1, 0, 2]
  assert users.occupation_vocab == ("<pad>", "other", "technician")
  assert users.occupation.tolist() == [0, 2, 1, 0, 2]
  assert users.zip_code.tolist() == ["", "85711", "94043", "", "T8H1N"]


@pytest.mark.parametrize("bad, line, problem", [
    ("3|x|M|writer|1", 3, "age 'x' is not an integer"),
    ("2|30|M|writer|1", 3, "user id 2 repeats line 2"),
    ("3|30|M|writer", 3, "got 4 fields")])
def test_ml100k_users_errors(tmp_path, bad, line, problem):
  _write(tmp_path, "movielens-100k/u.user", U_USER_2 + bad + "\n")
  with pytest.raises(DataFormatError, match=rf"u\.user:{line}: ") as info:
    movielens.load_ml100k_users(tmp_path)
  assert problem in str(info.value)


def test_ml1m_users_table_and_bad_occupation(tmp_path):
  _write(tmp_path, "movielens-1m/users.dat",
         "1::F::1::10::48067\n2::M::56::16::70072\n")
  users = movielens.load_ml1m_users(tmp_path)
  assert len(users) == 2 and users.age.tolist() == [0, 1, 56]
  assert [users.occupation_vocab[c] for c in users.occupation[1:]] == [
      "K-12 student", "self-employed"]
  _write(tmp_path, "movielens-1m/users.dat", "1::F::1::10::1\n2::M::1::21::2\n")
  with pytest.raises(DataFormatError, match=r"users\.dat:2: .*\[0, 20\]"):
    movielens.load_ml1m_users(tmp_path)


def _u_item_line(item: int, title: str, genres: list[int]) -> str:
  flags = "|".join(str(int(g in genres)) for g in range(19))
  return f"{item}|{title}|01-Jan-1995||http://x|{flags}"


def test_ml100k_items_table(tmp_path):
  text = "\n".join([_u_item_line(1, "Toy Story (1995)", [3, 4, 5]),
                    _u_item_line(2, "Café Society (1995)", [1]),
                    _u_item_line(3, "unknown", [0])]) + "\n"
  _write(tmp_path, "movielens-100k/u.item", text)  # written as Latin-1
  items = movielens.load_ml100k_items(tmp_path)
  assert len(items) == 3 and items.genres.shape == (4, 19)
  assert items.genres.dtype == np.uint8 and items.genres[0].sum() == 0
  assert np.flatnonzero(items.genres[1]).tolist() == [3, 4, 5]
  assert items.genre_vocab[1] == "Action" and items.genres[2, 1] == 1
  assert items.title[2] == "Café Society (1995)"
  assert items.year.tolist() == [0, 1995, 1995, 0]


def test_ml100k_items_bad_genre_flag(tmp_path):
  line = _u_item_line(2, "B (1990)", [1]).replace("|1|", "|2|")
  _write(tmp_path, "movielens-100k/u.item",
         _u_item_line(1, "A (1990)", []) + "\n" + line + "\n")
  with pytest.raises(DataFormatError,
                     match=r"u\.item:2: genre flag for Action.*0 or 1"):
    movielens.load_ml100k_items(tmp_path)


MOVIES_DAT = ("3952::Contender, The (2000)::Drama|Thriller\n"
              "1::Toy Story (1995)::Animation|Children's|Comedy\n"
              "48::Pocahontas (1995)::Animation|Children's|Musical|Romance\n"
              "661::James and the Giant Peach (1996)::Animation|Children's\n"
              "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n")


def test_ml1m_movies_sorted_and_aligned_to_ratings(tmp_path):
  _write(tmp_path, "movielens-1m/movies.dat", MOVIES_DAT)
  _write(tmp_path, "movielens-1m/ratings.dat", RATINGS_DAT)
  movies = movielens.load_ml1m_movies(tmp_path)
  assert len(movies) == 5 and movies.genres.shape == (6, 18)
  assert movies.raw_ids.tolist() == [-1, 1, 48, 661, 1193, 3952]
  assert movies.year.tolist() == [0, 1995, 1995, 1996, 1975, 2000]
  drama = movies.genre_vocab.index("Drama")
  assert movies.genres[:, drama].tolist() == [0, 0, 0, 0, 1, 1]
  aligned = movies.align(movielens.load_ml1m(tmp_path))
  assert aligned.raw_ids.tolist() == [-1, 48, 661, 1193]
  assert aligned.title[3].startswith("One Flew")


def test_ml1m_movies_unknown_genre_and_missing_metadata(tmp_path):
  _write(tmp_path, "movielens-1m/movies.dat", "1::A (1990)::Drama|Noir\n")
  with pytest.raises(DataFormatError, match=r"movies\.dat:1: .*'Noir'"):
    movielens.load_ml1m_movies(tmp_path)
  _write(tmp_path, "movielens-1m/movies.dat", "1::A (1990)::Drama\n")
  _write(tmp_path, "movielens-1m/ratings.dat", RATINGS_DAT)
  movies = movielens.load_ml1m_movies(tmp_path)
  with pytest.raises(ValueError, match="no metadata"):
    movies.align(movielens.load_ml1m(tmp_path))


def _shared_data() -> Path:
  env = os.environ.get("JAXREC_DATA_DIR")
  root = Path(env) if env else Path(__file__).parents[2] / "shared" / "data"
  if not (root / "movielens-100k" / "u.data").is_file():
    pytest.skip(f"no shared MovieLens data under {root}")
  return root


def test_real_ml100k():
  root = _shared_data()
  data = movielens.load_ml100k(root)
  assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1_682)
  assert np.unique(data.users).size == 943
  assert np.bincount(data.ratings.astype(int))[1:].tolist() == [
      6_110, 11_370, 27_145, 34_174, 21_201]
  assert len(movielens.load_ml100k_users(root)) == 943
  items = movielens.load_ml100k_items(root)
  assert len(items) == 1_682 and items.genres.shape == (1_683, 19)


def test_real_ml1m():
  root = _shared_data()
  data = movielens.load_ml1m(root)
  assert (len(data), data.n_users, data.n_items) == (1_000_209, 6_040, 3_706)
  assert np.unique(data.items).size == 3_706
  assert data.item_raw_ids[-1] == 3_952
  assert len(movielens.load_ml1m_users(root)) == 6_040
  movies = movielens.load_ml1m_movies(root)
  assert len(movies) == 3_883 and movies.genres.shape == (3_884, 18)
  assert len(movies.align(data)) == 3_706
