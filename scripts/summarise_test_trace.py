"""Traced sweep runs read two ways: on the epoch validation chose (ours) and
on the epoch with the best test HR@10 (the reading of the papers' code).

  python scripts/summarise_test_trace.py \
      --config=experiments/configs/ncf_ml1m.py --workdir=runs/ncf_ml1m \
      --only=test-trace --name=ncf_ml1m_test_trace

NCF's released code (NeuMF.py, GMF.py, MLP.py) evaluates test after every
epoch and reports, and saves for pre-training, the epoch of its best test
HR@10.  This script trains nothing: for each sweep run of `--config` whose
name matches `--only`, it reads results.json (the test figures on the epoch
chosen on validation) and the 'test_trace' records that eval.trace_test
left in metrics.jsonl (test after every epoch; nothing read them while
training).  Two rows per (model, variant): protocol '<p>' is ours;
'<p>, best test epoch (leaky)' takes every metric from the epoch of highest
test HR@10 (the earliest on a tie).  The second selects on the test set, so
it is not a result: it tells a gap in the model from a gap in the protocol.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.sweep import load_sweep, run_name  # noqa: E402
from jaxrec import results  # noqa: E402
from jaxrec.train import records  # noqa: E402

METRICS = ("HR@10", "NDCG@10", "MRR")
SELECT = "HR@10"
LEAKY = ", best test epoch (leaky)"


def traced_runs(sweep: list[dict], root: Path, only: str
                ) -> tuple[list[dict], list[str]]:
  """([{entry fields, 'result', 'peak'}], names of matching runs not done).

  A run is done once its results.json exists; a done run without
  'test_trace' records is an error (it was not run with eval.trace_test).
  """
  runs, missing = [], []
  for entry in sweep:
    name = run_name(entry)
    if not re.search(only, name):
      continue
    done = root / name / "results.json"
    if not done.exists():
      missing.append(name)
      continue
    result = records.read_json(done)
    peak = records.best_traced_test(root / name,
                                    f"{result['protocol']}/{SELECT}")
    if peak is None:
      raise ValueError(f"{root / name}: no 'test_trace' records in "
                       "metrics.jsonl; run it with eval.trace_test=True")
    runs.append({**entry, "result": result, "peak": peak})
  return runs, missing


def two_readings(runs: list[dict]) -> list[dict]:
  """Per (model, variant), in first-seen order: the row on the epoch chosen
  on validation, then the row on the best test epoch; 'best_epoch' is the
  mean epoch each reading took."""
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault((run["model"], run["variant"]), []).append(run)
  rows = []
  for (model, variant), members in groups.items():
    protocol = members[0]["result"]["protocol"]
    key = lambda m: f"{protocol}/{m}"
    paper = members[0].get("paper", {}).get(protocol, {})
    common = {"model": model, "variant": variant,
              "dataset": members[0]["result"].get("dataset", ""),
              "paper": paper, "seeds": len(members),
              "epochs": float(np.mean([r["result"]["epochs"]
                                       for r in members]))}
    rows.append({**common, "protocol": protocol, "metrics": {
        m: results.seed_stats([r["result"]["test"][key(m)] for r in members])
        for m in METRICS}, "best_epoch": float(np.mean(
            [r["result"]["best_epoch"] for r in members]))})
    rows.append({**common, "protocol": protocol + LEAKY, "metrics": {
        m: results.seed_stats([r["peak"][key(m)] for r in members])
        for m in METRICS},
        "best_epoch": float(np.mean([r["peak"]["epoch"] for r in members]))})
  return rows


def gaps(rows: list[dict]) -> list[str]:
  """'- <model> <variant> <protocol> HR@10: 0.7081 vs 0.730 (-0.0219)' for
  every row with a paper figure."""
  return [f"- {r['model']} {r['variant']} [{r['protocol']}] {m}: "
          f"{r['metrics'][m]['mean']:.4f} vs {paper:.3f} "
          f"({r['metrics'][m]['mean'] - paper:+.4f})"
          for r in rows for m, paper in sorted(r["paper"].items())]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", required=True, help="sweep config file")
  parser.add_argument("--workdir", required=True, help="sweep root")
  parser.add_argument("--only", default="test-trace", help="regex on runs")
  parser.add_argument("--name", required=True, help="table name")
  parser.add_argument("--results_dir", default="results")
  parser.add_argument("--note", default="", help="text under the notes")
  args = parser.parse_args()
  sweep, notes = load_sweep(args.config)
  runs, missing = traced_runs(sweep, Path(args.workdir), args.only)
  if not runs:
    raise SystemExit(f"no finished run under {args.workdir} matches "
                     f"{args.only!r}")
  rows = two_readings(runs)
  lines = [notes, "",
           "Two readings of the same runs (scripts/summarise_test_trace.py): "
           "the test figures on the epoch chosen on validation, and on the "
           f"epoch of best test {SELECT} (every metric from that epoch), as "
           "NCF's released code reports. 'best epoch' is the mean epoch each "
           "reading took. The second reading selects on test: it is not a "
           "result, and no target is judged on it.", ""]
  if missing:
    lines += ["Not finished when this table was written: " +
              ", ".join(missing) + ".", ""]
  lines += ["Against the paper:", "", *gaps(rows)]
  if args.note:
    lines += ["", args.note]
  paths = results.write(args.name, rows, results.command_line(),
                        args.results_dir, "\n".join(lines))
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
