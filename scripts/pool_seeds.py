"""One row from the same model's rows in several results files, over
disjoint seeds (e.g. seed 0 run in one sweep, seeds 1-2 in a later one).

  python scripts/pool_seeds.py --name=seq_beauty_refit_pooled \
      --row='refit|results/seq_beauty_refit.json|BERT4Rec|lr=1e-3,epochs=40,refit' \
      --row='refit|results/seq_beauty_refit_seeds.json|BERT4Rec|lr=1e-3,refit-35-epochs'

Each --row is 'LABEL|FILE|MODEL|VARIANT': the rows of one results file (one
per protocol).  The --row specs sharing a LABEL become one row per
(model, protocol) with that label as its variant: mean ± std over all their
seeds (results.pool, exact from each row's mean, std and seed count).
Trains nothing, so every figure traces back to the files named; their
headers give the commands, commits and dates.  Per-user significance
tests are not carried over.  Writes results/<name>.*.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import results  # noqa: E402


def load_rows(spec: str) -> tuple[str, list[dict]]:
  """(label, rows) of one 'LABEL|FILE|MODEL|VARIANT' spec; raises
  ValueError when it is malformed or names no row."""
  parts = spec.split("|")
  if len(parts) != 4 or not all(parts):
    raise ValueError(f"--row={spec!r}; expected 'LABEL|FILE|MODEL|VARIANT'")
  label, path, model, variant = parts
  rows = [r for r in json.loads(Path(path).read_text())["rows"]
          if (r["model"], r["variant"]) == (model, variant)]
  if not rows:
    raise ValueError(f"--row={spec!r}: {path} has no row of model {model!r} "
                     f"and variant {variant!r}")
  return label, [{**r, "source": Path(path).stem} for r in rows]


def pooled_rows(specs: list[str]) -> list[dict]:
  """One pooled row per (label, model, protocol), in first-seen order."""
  groups: dict[tuple, list[dict]] = {}
  for spec in specs:
    label, rows = load_rows(spec)
    for row in rows:
      groups.setdefault((label, row["model"], row["protocol"]), []).append(row)
  return [results.pool(rows, variant=label,
                       source=", ".join(dict.fromkeys(r["source"]
                                                      for r in rows)))
          for (label, _, _), rows in groups.items()]


def main(argv):
  del argv
  f = flags.FLAGS
  paths = results.write(f.name, pooled_rows(f.row), results.command_line(),
                        f.results_dir, f.note)
  print(paths[1].read_text())


if __name__ == "__main__":
  flags.DEFINE_multi_string("row", [], "'LABEL|FILE|MODEL|VARIANT'.")
  flags.DEFINE_string("name", None, "Table name.", required=True)
  flags.DEFINE_string("results_dir", "results", "Table directory.")
  flags.DEFINE_string("note", "", "Text above the table.")
  app.run(main)
