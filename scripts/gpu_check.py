"""The accelerator path of the sequential models, checked and timed.

  python scripts/gpu_check.py --out results

On the default JAX backend (a GPU where there is one): (1) dropout's
hashed keep masks equal the CPU backend's bit for bit (the same keys and
shapes give the same masks on every backend); (2) bench_seq's SASRec and
BERT4Rec JAX training steps (production models, bench_seq's shapes,
`--steps` steps per dispatch) give finite losses, and their throughput is
timed: median over `--repeats` calls after a compiling warm-up call.
Writes results/<name>.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results, timing  # noqa: E402
from jaxrec.models import dropout  # noqa: E402


def masks_match_cpu(shape=(64, 2, 200, 200), rate=0.1) -> bool:
  """Whether keep_mask gives the same bits on the default backend as on
  the CPU for one key."""
  key = jax.random.key(7)
  here = np.asarray(jax.jit(dropout.keep_mask, static_argnums=(1, 2))(
      key, rate, shape))
  with jax.default_device(jax.devices("cpu")[0]):
    there = np.asarray(jax.jit(dropout.keep_mask, static_argnums=(1, 2))(
        jax.random.key(7), rate, shape))
  return bool((here == there).all())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--name", default="gpu_check")
  parser.add_argument("--steps", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  device = jax.devices()[0]
  same = masks_match_cpu()
  print(f"device {device.device_kind}; masks equal the CPU's: {same}",
        flush=True)
  rows = []
  for name, spec in seq_steps.SPECS.items():
    # Row groups serve the CPU's two cores; an accelerator runs one group.
    run, n, _ = seq_steps.jax_runner(name, spec["batch"], args.steps,
                                     row_groups=1)
    # jax_runner has compiled and run the step once already.
    rate = n / timing.median_seconds(run, args.repeats, warmup=0)
    print(f"{name}: {rate:.0f} seq/s", flush=True)
    rows.append(results.measured_row(
        name, device.device_kind, "train-step", "bench_seq shapes",
        seqs_per_s=rate, masks_equal_cpu=float(same)))
  notes = (f"Backend {jax.default_backend()}, device {device.device_kind}, "
           f"jax {jax.__version__}. seq_steps.jax_runner at bench_seq's "
           f"shapes (row_groups=1), {args.steps} steps per dispatch, median of "
           f"{args.repeats} calls after the compiling call; "
           "masks_equal_cpu = 1 when dropout.keep_mask on a (64, 2, 200, "
           "200) mask gave the same bits here as on the CPU backend.")
  paths = results.write(args.name, rows, results.command_line(), args.out,
                        notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
