"""Downloader against a local HTTP server serving a zip built here."""

import hashlib
import http.server
import io
import os
from pathlib import Path
import socket
import threading
import zipfile

import pytest

from jaxrec.data import download, movielens
from jaxrec.data.download import DownloadError, fetch

FILES = {"u.data": "1\t2\t3\t881250949\n2\t1\t5\t881250950\n",
         "u.info": "2 users\n2 items\n2 ratings\n", "u.item": "",
         "u.user": "", "u.genre": "", "u.occupation": "", "README": "hi\n"}


def _zip(files: dict[str, str], top: str = "ml-100k") -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as zf:
    zf.writestr(f"{top}/", "")
    for name, text in files.items():
      zf.writestr(f"{top}/{name}", text)
    zf.writestr("__MACOSX/._u.data", "junk")
  return buffer.getvalue()


ARCHIVE = _zip(FILES)
SHA = hashlib.sha256(ARCHIVE).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  """/good.zip, /short.zip (Content-Length too large), /lacking.zip."""

  hits = []

  def do_GET(self):  # noqa: N802 (http.server's naming)
    self.hits.append(self.path)
    body = {"/good.zip": ARCHIVE, "/short.zip": ARCHIVE,
            "/lacking.zip": _zip({"u.data": "1\t1\t1\t1\n"})}.get(self.path)
    if body is None:
      self.send_error(404)
      return
    self.send_response(200)
    extra = 1000 if self.path == "/short.zip" else 0
    self.send_header("Content-Length", str(len(body) + extra))
    self.end_headers()
    self.wfile.write(body if not extra else body[:len(body) // 2])
    self.close_connection = True

  def log_message(self, *args):
    pass


@pytest.fixture()
def server(monkeypatch):
  monkeypatch.setenv("no_proxy", "*")  # never route 127.0.0.1 via a proxy
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  thread = threading.Thread(target=httpd.serve_forever,
                            kwargs={"poll_interval": 0.02}, daemon=True)
  thread.start()
  _Handler.hits.clear()
  yield f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def _leftovers(root: Path) -> list[str]:
  return sorted(os.listdir(root)) if root.exists() else []


def test_fetch_extracts_verified_files(server, tmp_path):
  folder = fetch("ml-100k", tmp_path, url=f"{server}/good.zip", sha256=SHA,
                 timeout=5)
  assert folder == tmp_path / "movielens-100k"
  assert sorted(os.listdir(folder)) == sorted(FILES)
  assert (folder / "u.data").read_text() == FILES["u.data"]
  assert _leftovers(tmp_path) == ["movielens-100k"]  # no temp files
  # Present files are not fetched again.
  fetch("ml-100k", tmp_path, url=f"{server}/good.zip", sha256=SHA)
  assert _Handler.hits == ["/good.zip"]


def test_loader_download_flag_fetches(server, tmp_path, monkeypatch):
  archive = download.ARCHIVES["ml-100k"]
  monkeypatch.setitem(download.ARCHIVES, "ml-100k", download.Archive(
      url=f"{server}/good.zip", sha256=SHA, folder=archive.folder,
      top=archive.top, members=archive.members))
  with pytest.raises(FileNotFoundError):
    movielens.load_ml100k(tmp_path)
  data = movielens.load_ml100k(tmp_path, download=True)
  assert len(data) == 2 and (data.n_users, data.n_items) == (2, 2)


def test_wrong_checksum_leaves_nothing(server, tmp_path):
  with pytest.raises(DownloadError) as info:
    fetch("ml-100k", tmp_path, url=f"{server}/good.zip", sha256="0" * 64)
  assert f"expected {'0' * 64}, got {SHA}" in str(info.value)
  assert _leftovers(tmp_path) == []


def test_real_checksum_rejects_other_archive(server, tmp_path):
  with pytest.raises(DownloadError, match=download.ARCHIVES["ml-100k"].sha256):
    fetch("ml-100k", tmp_path, url=f"{server}/good.zip")
  assert _leftovers(tmp_path) == []


def test_truncated_download_is_an_error(server, tmp_path):
  with pytest.raises(DownloadError, match="truncated|cut short"):
    fetch("ml-100k", tmp_path, url=f"{server}/short.zip", sha256=SHA,
          timeout=5)
  assert _leftovers(tmp_path) == []


def test_archive_without_needed_files(server, tmp_path):
  body = _zip({"u.data": "1\t1\t1\t1\n"})
  sha = hashlib.sha256(body).hexdigest()
  with pytest.raises(DownloadError, match="lacks .*u.info"):
    fetch("ml-100k", tmp_path, url=f"{server}/lacking.zip", sha256=sha)
  assert _leftovers(tmp_path) == []


def test_fills_a_partly_present_folder(server, tmp_path):
  (tmp_path / "movielens-100k").mkdir()
  (tmp_path / "movielens-100k" / "mine.txt").write_text("keep")
  folder = fetch("ml-100k", tmp_path, url=f"{server}/good.zip", sha256=SHA)
  assert sorted(os.listdir(folder)) == sorted([*FILES, "mine.txt"])
  assert _leftovers(tmp_path) == ["movielens-100k"]


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_offline_names_url_and_target(tmp_path, monkeypatch):
  monkeypatch.setenv("no_proxy", "*")
  url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
  with pytest.raises(DownloadError) as info:
    fetch("ml-100k", tmp_path, url=url, timeout=5)
  message = str(info.value)
  assert url in message and str(tmp_path / "movielens-100k") in message
  assert "by hand" in message
  assert _leftovers(tmp_path) == []


def test_http_error_is_a_download_error(server, tmp_path):
  with pytest.raises(DownloadError, match="404"):
    fetch("ml-100k", tmp_path, url=f"{server}/missing.zip")


def test_registry_and_default_dir(monkeypatch, tmp_path):
  assert set(download.ARCHIVES) == {"ml-100k", "ml-1m"}
  for archive in download.ARCHIVES.values():
    assert archive.url.startswith("https://files.grouplens.org/")
    assert len(archive.sha256) == 64 and int(archive.sha256, 16) >= 0
  monkeypatch.setenv("JAXREC_DATA_DIR", str(tmp_path))
  assert download.default_data_dir() == tmp_path
  monkeypatch.delenv("JAXREC_DATA_DIR")
  assert download.default_data_dir() == Path.home() / ".cache" / "jaxrec"
  with pytest.raises(KeyError, match="ml-20m"):
    fetch("ml-20m", tmp_path)
