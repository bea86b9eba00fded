"""How much PyTorch's NCF step depends on the process it runs in.

  pip install -e '.[bench]'
  python scripts/bench_torch_malloc.py

bench_ncf times PyTorch in the same process as the JAX contenders, after
they have compiled and run.  This runs bench_ncf's torch_runner (MLP-3 and
NeuMF, 64 factors, batch 256, Adam) in fresh child processes, one per
set-up, so each starts from the same state:
  fresh: nothing runs before PyTorch;
  after_alloc: numpy allocates and frees arrays of 1 to 30 MB first (glibc's
    malloc then serves PyTorch's few-MB gradient buffers from its heap
    instead of fresh mmaps: its dynamic mmap threshold);
  after_jax: bench_ncf's JAX row_adam runner compiles and runs first, as in
    bench_ncf.
Writes results/bench_torch_malloc.* (ms per PyTorch step, medians over
rounds, and each set-up's ratio to `fresh`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import results  # noqa: E402

SETUPS = ("fresh", "after_alloc", "after_jax")
MODELS = ("MLP-3", "NeuMF")


def child(setup: str, name: str, rounds: int) -> list[float]:
  """ms per PyTorch step, one figure per round, in this process."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import bench_ncf
  from jaxrec import timing
  if setup == "after_alloc":
    for mb in (1, 4, 16, 30):
      block = np.ones(mb << 18, np.float32)
      del block
  elif setup == "after_jax":
    run, _ = bench_ncf.jax_runner(name, 64, 256, 256, tables="row_adam")
    run()
  rates = timing.interleaved_rates(
      {"torch": bench_ncf.torch_runner(name, 64, 256, 64)}, rounds, 3)
  return [256e3 / r for r in rates["torch"]]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--child", nargs=2, metavar=("SETUP", "MODEL"))
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(*args.child, args.rounds)))
    return
  rows, per_round = [], []
  for name in MODELS:
    ms = {}
    for setup in SETUPS:
      out = subprocess.run(
          [sys.executable, __file__, "--child", setup, name,
           "--rounds", str(args.rounds)],
          capture_output=True, text=True, check=True).stdout
      ms[setup] = json.loads(out.strip().splitlines()[-1])
      per_round.append(f"{name} {setup}: " +
                       "/".join(f"{x:.2f}" for x in ms[setup]))
    med = {k: float(np.median(v)) for k, v in ms.items()}
    metrics = {f"{k}_ms_per_step": v for k, v in med.items()}
    metrics.update({f"{k}_speedup": med["fresh"] / med[k]
                    for k in SETUPS[1:]})
    rows.append({"model": name, "variant": "factors=64,batch=256",
                 "dataset": "ml-1m shapes", "protocol": "torch-step",
                 "metrics": {k: {"mean": v, "std": 0.0}
                             for k, v in metrics.items()}})
    print(name, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
  import torch
  notes = (f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads: "
           "bench_ncf.torch_runner (eager, dense nn.Embedding, "
           "torch.optim.Adam 1e-3, BCE), each set-up in its own fresh "
           f"process, {args.rounds} rounds of 3 timed calls of 64 steps; a "
           "figure is the median over rounds; <setup>_speedup = fresh ms / "
           "<setup> ms. Per round, ms per step: " + "; ".join(per_round) +
           ". GLIBC_TUNABLES: "
           f"'{os.environ.get('GLIBC_TUNABLES', '')}' (glibc's defaults "
           "unless set).")
  paths = results.write("bench_torch_malloc", rows, results.command_line(),
                        args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
