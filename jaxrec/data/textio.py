"""Reading delimited text files with errors that name the file and line.

The fast path hands the whole file to numpy's C reader; only when that
fails is the file re-read line by line, so the first bad line is reported
with its 1-based number.  No line is ever skipped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from jaxrec.data.errors import DataFormatError

_SEP_NAMES = {"\t": "tab", ",": "comma"}


def decode(path: Path, raw: bytes, encoding: str, expected: str) -> str:
  """`raw` as text; DataFormatError on bad bytes or an empty file."""
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    raise DataFormatError(
        path, line, f"byte {raw[e.start:e.start + 1]!r} does not decode",
        f"{encoding} text") from None
  text = text.replace("\r\n", "\n").rstrip("\n")
  if not text.strip():
    raise DataFormatError(path, None, "the file is empty", expected)
  return text


def layout(sep: str, names: tuple[str, ...]) -> str:
  sep_name = _SEP_NAMES.get(sep, repr(sep))
  return f"{len(names)} {sep_name}-separated fields {', '.join(names)}"


def split_fields(path: Path, text: str, sep: str, names: tuple[str, ...],
                 first_line: int = 1) -> list[list[str]]:
  """Fields of each line (row i is line i + first_line); raises on a wrong
  count."""
  rows = [line.split(sep) for line in text.split("\n")]
  for i, fields in enumerate(rows, first_line):
    if len(fields) != len(names):
      raise DataFormatError(path, i, f"got {len(fields)} fields",
                            layout(sep, names))
  return rows


def read_fields(path: Path, encoding: str, sep: str,
                names: tuple[str, ...]) -> list[list[str]]:
  text = decode(path, path.read_bytes(), encoding, layout(sep, names))
  return split_fields(path, text, sep, names)


def read_text(path: Path, encoding: str, sep: str, names: tuple[str, ...],
              header: str | None = None) -> tuple[str, int]:
  """The decoded text and the line number its first row is on.

  Args:
    header: when given, the exact first line, checked and stripped.

  Raises:
    DataFormatError: a bad byte, a wrong header, or no rows after it.
  """
  path = Path(path)
  text = decode(path, path.read_bytes(), encoding, layout(sep, names))
  if header is None:
    return text, 1
  got, _, text = text.partition("\n")
  if got != header:
    raise DataFormatError(path, 1, f"header {got[:80]!r}",
                          f"the header {header[:80]!r}")
  if not text:
    raise DataFormatError(path, None, "no rows after the header",
                          layout(sep, names))
  return text, 2


def read_numeric(path: Path, sep: str, names: tuple[str, ...],
                 header: str | None = None) -> dict[str, np.ndarray]:
  """Columns of a numeric file: (L,) int64, or float64 for "rating".

  Args:
    header: when given, the exact first line; the data starts on line 2.
  """
  path = Path(path)
  text, first_line = read_text(path, "ascii", sep, names, header)
  # loadtxt wants a one-character delimiter; "\x1f" never occurs in data
  # that parses, and line breaks stay put so line numbers still hold.
  delimiter = sep if len(sep) == 1 else "\x1f"
  try:
    table = np.loadtxt(io.StringIO(text.replace(sep, delimiter)),
                       delimiter=delimiter, dtype=np.int64, comments=None,
                       ndmin=2)
  except (ValueError, OverflowError):
    table = None
  # loadtxt drops blank lines, so a shape mismatch also sends us to the scan;
  # so do decimal ratings (never in MovieLens), which the scan accepts.
  if table is None or table.shape != (text.count("\n") + 1, len(names)):
    return scan(path, text, sep, names, first_line)
  cols = {n: table[:, j] for j, n in enumerate(names)}
  if "rating" in cols:
    cols["rating"] = cols["rating"].astype(np.float64)
  return cols


def scan(path: Path, text: str, sep: str, names: tuple[str, ...],
         first_line: int = 1) -> dict[str, np.ndarray]:
  """Slow exact parse that raises for the first malformed line."""
  values = [[] for _ in names]
  rows = split_fields(path, text, sep, names, first_line)
  for i, fields in enumerate(rows, first_line):
    for column, name, field in zip(values, names, fields):
      if name == "rating":
        column.append(number(path, i, name, field, float))
      else:
        column.append(number(path, i, name, field, int, -2**63, 2**63 - 1))
  return {n: np.asarray(v) for n, v in zip(names, values)}


def number(path: Path, line: int, name: str, text: str, kind: type,
           lo: int | None = None, hi: int | None = None) -> int | float:
  """`text` as `kind` (within [lo, hi] when given), else DataFormatError."""
  noun, adjective = ("an integer", "an integer") if kind is int else (
      "a number", "a numeric")
  try:
    value = kind(text)
  except ValueError:
    raise DataFormatError(path, line, f"{name} {text!r} is not {noun}",
                          f"{adjective} {name}") from None
  if lo is not None and not lo <= value <= hi:
    raise DataFormatError(path, line, f"{name} {value} is out of range",
                          f"{name} in [{lo}, {hi}]")
  return value
