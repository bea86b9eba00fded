"""Same-run ablation of the blocking options at bench_seq's shapes:
SASRec's causal query blocks (causal_block), both models' attention row
blocks (row_block) and their blocks' independent row groups (row_groups),
each variant the production training step.

  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_seq_ablation.py

Every variant computes the same function (tests/test_dropout.py); only
where dropout draws its masks differs.  The variants of a model take turns
(timing.interleaved_rates), and each round's rate is divided by that
round's rate of the first variant (bench_seq's setting), so a figure is
a paired ratio.  Writes results/bench_seq_ablation.*.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results, timing, xla_flags  # noqa: E402

# model -> variants; the first is bench_seq's own setting, the baseline.
VARIANTS = {
    "SASRec": [dict(causal_block=50, row_block=0, row_groups=8),
               dict(causal_block=50, row_block=0, row_groups=1),
               dict(causal_block=50, row_block=0, row_groups=4),
               dict(causal_block=50, row_block=0, row_groups=16),
               dict(causal_block=0, row_block=0, row_groups=8)],
    "BERT4Rec": [dict(row_block=8, row_groups=1),
                 dict(row_block=8, row_groups=4),
                 dict(row_block=0, row_groups=8)]}


def label(options: dict) -> str:
  return ",".join(f"{k}={v}" for k, v in options.items())


def main():
  parser = seq_steps.variant_parser(
      "bench_seq_ablation", "smoke mode: batch 8, one round of one repeat")
  args = parser.parse_args()
  rounds, repeats = seq_steps.rounds_and_repeats(args)
  load0 = os.getloadavg()[0]
  rows, round_notes = [], []
  for name, variants in VARIANTS.items():
    spec = seq_steps.SPECS[name]
    batch = 8 if args.quick else spec["batch"]
    runners = {label(v): seq_steps.jax_runner(name, batch, args.steps, **v)[:2]
               for v in variants}
    per_round = timing.interleaved_rates(runners, rounds, repeats)
    base = per_round[label(variants[0])]
    for variant, rates in per_round.items():
      ratios = [r / b for r, b in zip(rates, base)]
      round_notes.append(f"{name} {variant}: " + ", ".join(
          f"{r:.0f} ({q:.2f}x)" for r, q in zip(rates, ratios)))
      print(round_notes[-1], flush=True)
      m = spec["model"]
      rows.append({
          "model": name, "variant": variant, "protocol": "train-step",
          "dataset": f"random full rows, {seq_steps.N_ITEMS} items",
          "metrics": {k: {"mean": float(v), "std": 0.0} for k, v in {
              "seqs_per_s": np.median(rates),
              "ratio_vs_first": np.median(ratios),
              "batch": batch, "max_len": m["max_len"]}.items()}})
  load = os.getloadavg()
  notes = (
      f"seq_steps.jax_runner with SPECS' model options replaced as in the "
      f"variant column; {args.steps} steps per dispatch. Per model the "
      f"variants take turns in {rounds} rounds of {repeats} timed calls "
      "(timing.interleaved_rates); seqs_per_s is the median over rounds of "
      "each round's median; ratio_vs_first is the median over rounds of the "
      "round's rate / the first variant's (bench_seq's setting) in that "
      "round. Per round, seq/s (ratio): " + " | ".join(round_notes) +
      f". {xla_flags.describe()} Load average: {load0:.2f} (1 min) at the "
      f"start, {load[0]:.2f} at the end.")
  paths = results.write(args.name, rows, results.command_line(), args.out,
                        notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
