"""Does a bfloat16 tower speed up the NCF step on this CPU?

  pip install -e '.[bench]'
  JAXREC_DATA_DIR=../shared/data python scripts/bench_ncf_bf16.py --out results

MLP-3 and NeuMF at 64 predictive factors, batch 256 (the paper's) and
4096, with bench_ncf's fastest XLA set-up (optim.tables='row_adam'): the
tower in float32 against the same tower in mixed precision
(model.tower_dtype='bfloat16': float32 parameters, bfloat16 products).
Where MKL is installed, the float32 tower with its products by MKL:
model.matmul='blas' (sgemm) and 'blas_bf16' (inputs rounded to bfloat16
inside the kernel, cblas_gemm_bf16bf16f32 with float32 accumulation, on
AMX tiles where the CPU has them; every array stays float32).
Beside them, eager PyTorch in float32 and under torch.autocast(bfloat16),
so that each precision has its own ratio.  All take turns over rounds
(timing.interleaved_rates); a figure is the median over rounds.  Then,
where MKL is installed, one real NCF epoch at batch 256 with the 'blas'
and 'blas_bf16' towers (bench_ncf.ncf_epoch_seconds: needs the NCF split
under $JAXREC_DATA_DIR).  Writes results/bench_ncf_bf16.*.
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
from jaxrec.kernels import blas  # noqa: E402

SHAPES = ((256, 256), (4096, 32))     # (batch, steps per dispatch)


def contenders(name, batch, steps):
  run = lambda **kw: bench_ncf.jax_runner(name, 64, batch, steps,
                                          tables="row_adam", **kw)
  torch_steps = min(steps, 64)
  runners = {"jax_f32": run(),
             "jax_bf16": run(tower_dtype="bfloat16")}
  if blas.available():
    runners.update({"jax_blas_f32": run(matmul="blas"),
                    "jax_blas_bf16": run(matmul="blas_bf16")})
  return {**runners,
          "torch_f32": bench_ncf.torch_runner(name, 64, batch, torch_steps),
          "torch_bf16": bench_ncf.torch_runner(name, 64, batch, torch_steps,
                                               autocast=True)}


# (metric, numerator, denominator): paired ratios, where both ran.
RATIOS = (("bf16_speedup_jax", "jax_bf16", "jax_f32"),
          ("bf16_speedup_torch", "torch_bf16", "torch_f32"),
          ("f32_ratio_vs_torch", "jax_f32", "torch_f32"),
          ("bf16_ratio_vs_torch_bf16", "jax_bf16", "torch_bf16"),
          ("blas_bf16_speedup", "jax_blas_bf16", "jax_blas_f32"),
          ("blas_f32_ratio_vs_torch", "jax_blas_f32", "torch_f32"),
          ("blas_bf16_ratio_vs_torch_bf16", "jax_blas_bf16", "torch_bf16"),
          ("blas_bf16_ratio_vs_torch_f32", "jax_blas_bf16", "torch_f32"))


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
      metrics.update({k: ratio(a, b) for k, a, b in RATIOS
                      if a in rates and b in rates})
      rows.append({"model": name, "variant": f"factors=64,batch={batch}",
                   "dataset": "ml-1m shapes", "protocol": "train-step",
                   "metrics": {k: {"mean": v, "std": 0.0}
                               for k, v in metrics.items()}})
      notes.append(f"{name} batch {batch}: " + ", ".join(
          f"{k} {v:,.0f}" for k, v in med.items()))
      print(notes[-1], flush=True)
  if blas.available():
    for name in ("MLP-3", "NeuMF"):
      rows.append({"model": name, "variant": "factors=64,batch=256",
                   "dataset": "ml-1m ncf split", "protocol": "train-epoch",
                   "metrics": {f"{m}_epoch_s": {
                       "mean": bench_ncf.ncf_epoch_seconds(name, "row_adam",
                                                           m),
                       "std": 0.0} for m in ("blas", "blas_bf16")}})
      print(rows[-1], flush=True)
  text = (
      "Adam 1e-3, BCE, 64 factors. jax_* = bench_ncf.jax_runner with "
      "optim.tables='row_adam' (256 steps per dispatch at batch 256, 32 at "
      "4096), the tower in float32 or model.tower_dtype='bfloat16'; "
      "jax_blas_f32 / jax_blas_bf16 = the float32 tower with "
      "model.matmul='blas' (MKL's sgemm) / 'blas_bf16' (MKL's "
      "cblas_gemm_bf16bf16f32 on inputs rounded inside the kernel); "
      f"torch_* = eager PyTorch {torch.__version__}, "
      f"{torch.get_num_threads()} threads, float32 or its forward under "
      "torch.autocast('cpu', bfloat16). All take turns in "
      f"{args.rounds} rounds of {args.repeats} timed calls; ratios are "
      "medians over rounds of each round's ratio. Epoch = one real epoch of "
      "the NCF split (988,129 positives + 4 negatives each, batch 256, "
      "host-side negative sampling included) with optim.tables='row_adam' "
      "and model.matmul='blas' or 'blas_bf16'. Examples/s (medians): "
      + "; ".join(notes) + f". {xla_flags.describe()}")
  paths = results.write("bench_ncf_bf16", rows, results.command_line(),
                        args.out, text)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
