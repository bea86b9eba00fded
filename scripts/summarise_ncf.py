"""One table of every NCF row (8-64 predictive factors) from the sweeps'
results files, with each row's gap to the NCF paper.
Writes results/ncf_ml1m_all.{md,json}.

  python scripts/summarise_ncf.py

The sweeps were run one experiment at a time, each writing its own results
file; SOURCES names each file and the variants taken from it, and the
config's docstring (experiments/configs/ncf_ml1m.py) what each experiment
was.  Their headers name the commands, commits and dates.  This script
trains nothing: it copies the rows, so every figure traces back to one of
those files.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxrec import results

# Each results file and the variants taken from it.
SOURCES = {"ncf_ml1m": ("factors=8", "factors=16"),
           "ncf_ml1m_factors32": ("factors=32",),
           "ncf_ml1m_factors64": ("factors=64",),
           "ncf_ml1m_adam_finetune": (
               "factors=8,adam-finetune", "factors=8,adam-finetune,lr=1e-4",
               "factors=16,adam-finetune", "factors=32,adam-finetune",
               "factors=64,adam-finetune",
               "factors=64,adam-finetune,lr=1e-4"),
           "ncf_ml1m_epochs60": ("factors=8,epochs=60",
                                 "factors=16,epochs=60"),
           "ncf_ml1m_refit": ("factors=8,refit", "factors=16,refit",
                              "factors=32,refit"),
           "ncf_ml1m_code_embed": ("factors=8,code-embed",
                                   "factors=16,code-embed"),
           "ncf_ml1m_tuned64": ("factors=64,row-adam,batch=128,lr=0.001",
                                "factors=64,row-adam,tuned"),
           "ncf_ml1m_gmf_l2": (
               "factors=64,row-adam,batch=128,lr=0.001,l2=0.001,epochs=60",
               "factors=64,row-adam,tuned,gmf-l2=0.001"),
           "ncf_ml1m_mlp_l2": (
               "factors=64,row-adam,batch=128,lr=0.001,l2=0.001",
               "factors=64,row-adam,tuned,mlp-l2=0.001"),
           "ncf_ml1m_tuned8": ("factors=8,row-adam,batch=128,lr=0.001",
                               "factors=8,row-adam,tuned"),
           "ncf_ml1m_grid8_tuned": (
               "factors=8,row-adam,batch=1024,lr=0.001",
               "factors=8,row-adam,batch=256,lr=0.001",
               "factors=8,row-adam,batch=256,lr=0.0005",
               "factors=8,row-adam,grid8-tuned"),
           "ncf_ml1m_code_embed32": (
               "factors=32,row-adam,blas,code-embed",),
           "ncf_ml1m_code_embed64": (
               "factors=64,row-adam,blas,code-embed",),
           "ncf_ml1m_tuned16": ("factors=16,row-adam,batch=128,lr=0.001",
                                "factors=16,row-adam,tuned"),
           "ncf_ml1m_tuned32": ("factors=32,row-adam,batch=128,lr=0.001",
                                "factors=32,row-adam,tuned"),
           "ncf_ml1m_grid32_tuned": (
               "factors=32,row-adam,batch=256,lr=0.0005",),
           "ncf_ml1m_paper_init": ("factors=8,row-adam,paper-init",
                                   "factors=16,row-adam,paper-init",
                                   "factors=64,row-adam,paper-init")}
MODELS = ("GMF", "MLP-3", "NeuMF", "NeuMF-pre")
METRICS = ("HR@10", "NDCG@10", "MRR")
TOLERANCE = 0.01            # the "within 0.01 of the paper"


def collect(results_dir: Path) -> list[dict]:
  """The rows of every source for its own variants, ordered by model, then
  factors, then variant, then protocol; each keeps its source file's name."""
  rows = []
  for name, variants in SOURCES.items():
    for row in json.loads((results_dir / f"{name}.json").read_text())["rows"]:
      # Test figures only; rows written before 'role' existed are test's.
      if row["variant"] in variants and row.get("role", "test") == "test":
        metrics = {m: row["metrics"][m] for m in METRICS
                   if m in row["metrics"]}
        rows.append({**{k: v for k, v in row.items() if k != "significance"},
                     "metrics": metrics, "source": name})
  key = lambda r: (MODELS.index(r["model"]), _factors(r["variant"]),
                   r["variant"], r["protocol"] != "ncf-sampled-99")
  return sorted(rows, key=key)


def _factors(variant: str) -> int:
  """8 from 'factors=8', 'factors=8,epochs=60' or
  'factors=8,adam-finetune,lr=1e-4'."""
  return int(variant.split(",")[0].split("=")[1])


def verdicts(rows: list[dict]) -> list[str]:
  """One line per row with a paper figure: mean minus paper, and whether
  it is within TOLERANCE below the paper or above."""
  lines = []
  for row in rows:
    for metric, paper in sorted(row.get("paper", {}).items()):
      mean = row["metrics"][metric]["mean"]
      ok = mean >= paper - TOLERANCE
      lines.append(f"- {row['model']} {row['variant']} {metric}: "
                   f"{mean:.4f} vs {paper:.3f} ({mean - paper:+.4f}): "
                   f"{f'within {TOLERANCE} or above' if ok else 'MISSED'}")
  return lines


def main():
  results_dir = Path(__file__).resolve().parents[1] / "results"
  rows = collect(results_dir)
  notes = "\n".join([
      "Copied from " + ", ".join(f"results/{n}.md" for n in SOURCES) +
      " (their headers give the commands, commits and dates); "
      "p-values are in those files. NCF protocol (SPEC §2); "
      "mean ± std over seeds.", "",
      "Against the NCF paper (Table 2; Table 3 for MLP-3), target: within "
      f"{TOLERANCE} of the paper or above:", "", *verdicts(rows)])
  results.write("ncf_ml1m_all", rows, results.command_line(), results_dir,
                notes)


if __name__ == "__main__":
  main()
