"""Does a bfloat16 tower speed up the NCF step on this CPU?

  pip install -e '.[bench]'
  python scripts/bench_ncf_bf16.py --out results

MLP-3 and NeuMF at 64 predictive factors, batch 256 (the paper's) and
4096, with bench_ncf's fastest XLA set-up (optim.tables='row_adam'): the
tower in float32 against the same tower in mixed precision
(model.tower_dtype='bfloat16': float32 parameters, bfloat16 products).
Beside them, eager PyTorch in float32 and under torch.autocast(bfloat16),
so that each precision has its own ratio.  The four take turns over
rounds (timing.interleaved_rates); a figure is the median over rounds.
Writes results/bench_ncf_bf16.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import bench_ncf  # noqa: E402
from jaxrec import results, timing, xla_flags  # noqa: E402

SHAPES = ((256, 256), (4096, 32))     # (batch, steps per dispatch)


def contenders(name, batch, steps):
  run = lambda **kw: bench_ncf.jax_runner(name, 64, batch, steps,
                                          tables="row_adam", **kw)
  torch_steps = min(steps, 64)
  return {"jax_f32": run(),
          "jax_bf16": run(tower_dtype="bfloat16"),
          "torch_f32": bench_ncf.torch_runner(name, 64, batch, torch_steps),
          "torch_bf16": bench_ncf.torch_runner(name, 64, batch, torch_steps,
                                               autocast=True)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  import torch
  rows, notes = [], []
  for batch, steps in SHAPES:
    for name in ("MLP-3", "NeuMF"):
      rates = timing.interleaved_rates(contenders(name, batch, steps),
                                       args.rounds, args.repeats)
      med = {k: float(np.median(v)) for k, v in rates.items()}
      ratio = lambda a, b: float(np.median(np.divide(rates[a], rates[b])))
      metrics = {f"{k}_examples_per_s": v for k, v in med.items()}
      metrics.update({
          "bf16_speedup_jax": ratio("jax_bf16", "jax_f32"),
          "bf16_speedup_torch": ratio("torch_bf16", "torch_f32"),
          "f32_ratio_vs_torch": ratio("jax_f32", "torch_f32"),
          "bf16_ratio_vs_torch_bf16": ratio("jax_bf16", "torch_bf16")})
      rows.append({"model": name, "variant": f"factors=64,batch={batch}",
                   "dataset": "ml-1m shapes", "protocol": "train-step",
                   "metrics": {k: {"mean": v, "std": 0.0}
                               for k, v in metrics.items()}})
      notes.append(f"{name} batch {batch}: " + ", ".join(
          f"{k} {v:,.0f}" for k, v in med.items()))
      print(notes[-1], flush=True)
  text = (
      "Adam 1e-3, BCE, 64 factors. jax_* = bench_ncf.jax_runner with "
      "optim.tables='row_adam' (256 steps per dispatch at batch 256, 32 at "
      "4096), the tower in float32 or model.tower_dtype='bfloat16'; "
      f"torch_* = eager PyTorch {torch.__version__}, "
      f"{torch.get_num_threads()} threads, float32 or its forward under "
      "torch.autocast('cpu', bfloat16). The four take turns in "
      f"{args.rounds} rounds of {args.repeats} timed calls; ratios are "
      "medians over rounds of each round's ratio. Examples/s (medians): "
      + "; ".join(notes) + f". {xla_flags.describe()}")
  paths = results.write("bench_ncf_bf16", rows, results.command_line(),
                        args.out, text)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
