"""The one error type for bad input files."""

from __future__ import annotations

import os


class DataFormatError(ValueError):
  """A data file does not have the expected content.

  The message always names the file, the 1-based line (when there is one)
  and what was expected, e.g. ``u.data:17: got 3 fields; expected 4
  tab-separated fields user, item, rating, timestamp``.
  """

  def __init__(self, path: str | os.PathLike, line: int | None, problem: str,
               expected: str):
    self.path = os.fspath(path)
    self.line = line
    self.problem = problem
    self.expected = expected
    where = self.path if line is None else f"{self.path}:{line}"
    super().__init__(f"{where}: {problem}; expected {expected}")
