"""Fetches the official GroupLens MovieLens archives, verified by sha256.

Only the loaders call this, and only when files are missing and the caller
asked for a download. Everything is written inside `data_dir` under temporary
names first, so a failed or interrupted fetch never leaves a half-written
dataset folder behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
from pathlib import Path
import shutil
import socket
import tempfile
from typing import BinaryIO
import urllib.error
import urllib.request
import zipfile

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
  """A dataset archive could not be downloaded, verified or unpacked."""


@dataclasses.dataclass(frozen=True)
class Archive:
  """One downloadable dataset archive.

  Attributes:
    url: where GroupLens publishes the zip.
    sha256: hex digest of the whole zip file.
    folder: folder under the data dir that receives the archive's files.
    top: the single top-level folder inside the zip, stripped on extraction.
    members: files (relative to `top`) the loaders need; the archive must
      hold all of them.
  """

  url: str
  sha256: str
  folder: str
  top: str
  members: tuple[str, ...]


# The sha256 digests (and the sizes, 4,924,029 and 5,917,549 bytes) are those
# of tensorflow/datasets@1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c:
# tensorflow_datasets/url_checksums/movielens.txt; several independent
# projects pin the same digests. The u.data member of that ml-100k.zip is
# recorded elsewhere as sha256 06416e59...dca490, which the shared copy of
# u.data in this project matches.
ARCHIVES: dict[str, Archive] = {
    "ml-100k": Archive(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        sha256=(
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
        folder="movielens-100k",
        top="ml-100k",
        members=("u.data", "u.info", "u.item", "u.user", "u.genre",
                 "u.occupation", "README")),
    "ml-1m": Archive(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        sha256=(
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
        folder="movielens-1m",
        top="ml-1m",
        members=("ratings.dat", "users.dat", "movies.dat", "README")),
}


def default_data_dir() -> Path:
  """`$JAXREC_DATA_DIR` when set, else `~/.cache/jaxrec`."""
  env = os.environ.get("JAXREC_DATA_DIR")
  if env:
    return Path(env).expanduser()
  return Path.home() / ".cache" / "jaxrec"


def fetch(name: str, data_dir: str | os.PathLike | None = None, *,
          url: str | None = None, sha256: str | None = None,
          timeout: float = 30) -> Path:
  """Downloads, verifies and unpacks archive `name` unless already present.

  Args:
    name: a key of `ARCHIVES`, e.g. "ml-100k".
    data_dir: root data folder; defaults to `default_data_dir()`.
    url: overrides the archive URL (tests serve a local zip).
    sha256: overrides the expected digest of the zip.
    timeout: socket timeout in seconds.

  Returns:
    The folder `<data_dir>/<folder>` holding the archive's files.

  Raises:
    DownloadError: offline, HTTP error, truncated body, digest mismatch or a
      zip without the expected files. Nothing is extracted in these cases.
  """
  if name not in ARCHIVES:
    raise KeyError(f"unknown archive {name!r}; known: {sorted(ARCHIVES)}")
  archive = ARCHIVES[name]
  root = Path(data_dir) if data_dir is not None else default_data_dir()
  target = root / archive.folder
  if all((target / m).is_file() for m in archive.members):
    return target
  url = url or archive.url
  root.mkdir(parents=True, exist_ok=True)
  fd, tmp_zip = tempfile.mkstemp(dir=root, prefix=f".{name}-", suffix=".zip")
  try:
    with os.fdopen(fd, "wb") as out:
      got = _download(url, out, timeout,
                      f"{', '.join(archive.members)} by hand in {target}")
    expected = (sha256 or archive.sha256).lower()
    if got != expected:
      raise DownloadError(
          f"sha256 mismatch for {url}: expected {expected}, got {got}; the "
          "file was deleted")
    _extract(Path(tmp_zip), archive, target)
  finally:
    Path(tmp_zip).unlink(missing_ok=True)
  return target


def _download(url: str, out: BinaryIO, timeout: float, by_hand: str) -> str:
  """Streams `url` into `out`; returns the hex sha256 of the body."""
  digest = hashlib.sha256()
  n = 0
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
      length = response.headers.get("Content-Length")
      while chunk := response.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        n += len(chunk)
  except http.client.IncompleteRead as e:
    raise DownloadError(f"download of {url} was cut short: {e}") from e
  except (urllib.error.URLError, socket.timeout, ConnectionError,
          http.client.HTTPException) as e:
    raise DownloadError(
        f"could not download {url} ({e}). If this machine is offline, get "
        f"the archive elsewhere and place {by_hand}"
    ) from e
  # http.client returns a short body silently when the server closes early.
  if length is not None and n != int(length):
    raise DownloadError(
        f"download of {url} was truncated: got {n} of {length} bytes")
  return digest.hexdigest()


def _extract(zip_path: Path, archive: Archive, target: Path) -> None:
  """Unpacks the files under `archive.top` into `target`, all or nothing."""
  try:
    with zipfile.ZipFile(zip_path) as zf:
      files = _member_map(zf, archive)
      missing = sorted(set(archive.members) - set(files))
      if missing:
        raise DownloadError(
            f"{zip_path.name} lacks {missing} under {archive.top}/")
      staging = Path(tempfile.mkdtemp(dir=target.parent,
                                      prefix=f".{archive.folder}-"))
      try:
        for rel, info in files.items():
          dest = staging / rel
          dest.parent.mkdir(parents=True, exist_ok=True)
          with zf.open(info) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        _install(staging, target, list(files))
      finally:
        shutil.rmtree(staging, ignore_errors=True)
  except zipfile.BadZipFile as e:
    raise DownloadError(f"downloaded file is not a valid zip: {e}") from e


def _member_map(zf: zipfile.ZipFile,
                archive: Archive) -> dict[str, zipfile.ZipInfo]:
  """Maps paths relative to `archive.top` to zip entries (files only)."""
  files = {}
  prefix = archive.top + "/"
  for info in zf.infolist():
    if info.is_dir() or not info.filename.startswith(prefix):
      continue  # e.g. __MACOSX/ resource forks
    rel = info.filename[len(prefix):]
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts or not parts:
      raise DownloadError(f"unsafe path {info.filename!r} in archive")
    files[rel] = info
  return files


def _install(staging: Path, target: Path, rels: list[str]) -> None:
  """Moves the staged files to `target` with renames only."""
  if not target.exists():
    staging.rename(target)  # one atomic step
    return
  # A partly filled folder (e.g. metadata without ratings): each file is
  # replaced atomically; files the archive lacks are left alone.
  for rel in rels:
    (target / rel).parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / rel, target / rel)
