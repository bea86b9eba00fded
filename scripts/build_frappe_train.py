"""Rebuilds Frappe's missing NFM/BARS train file and prints every check.

  JAXREC_DATA_DIR=../shared/data python scripts/build_frappe_train.py

The file goes to `--cache_dir` (default `$JAXREC_CACHE_DIR/frappe` or
`~/.cache/jaxrec/frappe`); the checks are printed as JSON (and written to
`--json_out` when given).  The procedure and the figures are documented in
`jaxrec/data/README.md`, "Frappe train file".

`--sanity_lr` also fits an L2 logistic regression on the rebuilt train file
(scipy L-BFGS, full batch) and prints its validation and test AUC: a check
that the train file speaks the validation/test encoding (BARS Frappe_x1 LR
test AUC: 0.9356).  It is a data check, not the LR baseline of the CTR runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize, sparse, stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec.data import frappe, frappe_checks  # noqa: E402
from jaxrec.data.download import default_data_dir  # noqa: E402


def sanity_lr(folder: Path, train: Path, l2: float) -> dict:
  """Validation/test AUC of L2 logistic regression fitted on `train`."""
  def design(ids):
    return sparse.csr_matrix(
        (np.ones(ids.size), ids.ravel(),
         np.arange(0, ids.size + 1, ids.shape[1])), shape=(len(ids), n))
  def auc(labels, scores):
    ranks, pos = stats.rankdata(scores), labels == 1
    n_pos = pos.sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2)
                 / (n_pos * (~pos).sum()))
  files = {"train": frappe.read_libfm(train),
           "valid": frappe.read_libfm(folder / frappe.VALID),
           "test": frappe.read_libfm(folder / frappe.TEST)}
  n = 1 + max(int(ids.max()) for _, ids in files.values())
  x, y = design(files["train"][1]), (files["train"][0] == 1).astype(float)
  def loss(w):
    z = x @ w[:-1] + w[-1]
    g = (1 / (1 + np.exp(-z)) - y) / len(y)
    return (np.logaddexp(0, z) - y * z).mean() + l2 * w[:-1] @ w[:-1], (
        np.append(x.T @ g + 2 * l2 * w[:-1], g.sum()))
  start = time.perf_counter()
  fit = optimize.minimize(loss, np.zeros(n + 1), jac=True, method="L-BFGS-B",
                          options={"maxiter": 1000})
  out = {"l2": l2, "iterations": int(fit.nit), "converged": bool(fit.success),
         "seconds": round(time.perf_counter() - start, 1)}
  for role in ("valid", "test"):
    labels, ids = files[role]
    out[f"{role}_auc"] = round(auc(labels, design(ids) @ fit.x[:-1]), 4)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", type=Path, default=None,
                      help="data root holding frappe/ (default "
                      "$JAXREC_DATA_DIR, else ~/.cache/jaxrec)")
  parser.add_argument("--cache_dir", type=Path, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", type=Path, default=None)
  parser.add_argument("--sanity_lr", type=float, nargs="*", default=None,
                      metavar="L2", help="fit LR with these L2 weights")
  args = parser.parse_args()
  data_dir = args.data_dir or default_data_dir()
  start = time.perf_counter()
  path = frappe.train_file(data_dir, args.cache_dir, seed=args.seed)
  seconds = time.perf_counter() - start
  checks = frappe_checks.report(frappe.frappe_folder(data_dir), path)
  checks["train_file"] = {
      "path": str(path), "seed": args.seed,
      "sha256": path.with_suffix(".sha256").read_text().split()[0],
      "build_or_lookup_seconds": round(seconds, 2)}
  if args.sanity_lr is not None:
    checks["sanity_lr"] = [sanity_lr(frappe.frappe_folder(data_dir), path, l2)
                           for l2 in args.sanity_lr or [1e-5]]
  text = json.dumps(checks, indent=1)
  print(text)
  if args.json_out is not None:
    args.json_out.write_text(text + "\n")


if __name__ == "__main__":
  main()
