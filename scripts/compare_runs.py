"""Rows from finished runs of different sweeps, paired against a reference.

  python scripts/compare_runs.py --name=mf_vs_neumf_ml1m \
      --group='NeuMF-pre|factors=64|runs/ncf_ml1m/NeuMF-pre-factors=64-seed*' \
      --group='MF (Rendle et al.)|sgd,dim=64|runs/mf_ncf_ml1m/*sgd,dim=64-seed*' \
      --reference='NeuMF-pre|factors=64'

Each --group is 'MODEL|VARIANT|GLOB': the run directories (each with the
results.json and per_user.npz a training run writes) that make one row.
Trains nothing: the rows are the runs' own test figures, mean ± std over
the matched runs, each metric tested per user (seeds pooled) against the
reference row, as a sweep's table does within one sweep.  Runs evaluated
on different users or negatives are refused.  Writes results/<name>.*.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import results  # noqa: E402
from jaxrec.train import records  # noqa: E402


def load_group(spec: str) -> list[dict]:
  """The runs of one 'MODEL|VARIANT|GLOB' spec, in the shape
  `results.aggregate` takes; raises ValueError when the spec is malformed
  or no finished run matches."""
  parts = spec.split("|")
  if len(parts) != 3 or not all(parts):
    raise ValueError(f"--group={spec!r}; expected 'MODEL|VARIANT|GLOB'")
  model, variant, pattern = parts
  dirs = sorted(d for d in glob.glob(pattern)
                if (Path(d) / "results.json").exists())
  if not dirs:
    raise ValueError(f"--group={spec!r}: no directory matching {pattern!r} "
                     "holds a results.json (a finished run)")
  runs = []
  for d in dirs:
    result = records.read_json(Path(d) / "results.json")
    runs.append({"model": model, "variant": variant,
                 "dataset": result["dataset"], "result": result,
                 "workdir": d})
  return runs


def compare(specs: list[str], metrics: tuple[str, ...],
            reference: str | None = None, test: str = "paired-t"
            ) -> list[dict]:
  """Aggregated rows of every group, with paired tests against
  `reference` ('MODEL|VARIANT')."""
  runs = [run for spec in specs for run in load_group(spec)]
  rows = results.aggregate(runs, metrics)
  ref = tuple(reference.split("|")) if reference else None
  return results.significance(runs, rows, metrics, reference=ref, test=test)


def define_flags():
  """The command line's flags; defined only when run as a script, so that
  importing this module (the tests do) leaves absl's global flags alone."""
  flags.DEFINE_multi_string(
      "group", [], "'MODEL|VARIANT|GLOB' of the run directories of one row.")
  flags.DEFINE_string(
      "reference", None, "'MODEL|VARIANT' of the row the others are tested "
      "against; default: the best row of each protocol and metric.")
  flags.DEFINE_string("name", None, "Table name.", required=True)
  flags.DEFINE_string("results_dir", "results", "Table directory.")
  flags.DEFINE_list("metrics", ["HR@10", "NDCG@10", "MRR"],
                    "Metrics in the table.")
  flags.DEFINE_enum("test", "paired-t", ["paired-t", "wilcoxon",
                                         "paired-bootstrap"],
                    "Paired test on per-user test metrics.")
  flags.DEFINE_string("note", "", "Text above the table.")


def main(argv):
  del argv
  f = flags.FLAGS
  rows = compare(f.group, tuple(f.metrics), f.reference, f.test)
  paths = results.write(f.name, rows, results.command_line(),
                        f.results_dir, f.note)
  print(paths[1].read_text())


if __name__ == "__main__":
  define_flags()
  app.run(main)
