"""Where bench_seq's JAX training step spends its time, op by op.

  pip install -e .   # no torch needed: the JAX steps only
  python scripts/profile_seq_step.py --model SASRec

Runs seq_steps.jax_runner's step (the production model at bench_seq's
shapes, `--steps` steps per dispatch) under jax.profiler.trace after
warm-up, reads the trace's per-op events (XLA's CPU runtime records one
per executed thunk, on whichever pool thread ran it) and the optimised HLO
(dumped with --xla_dump_to, read for each op's shape and JAX op name).
Times are summed thread time per training step: with two pool threads
running independent ops at once, they add up to more than the step's wall
time. Ops are grouped by pass (forward, backward, other: optimiser and
loss glue) and by kind (matmul: a dot or a YNNPACK fusion of one; copy:
layout copies and transposes; select: masks and where; other
elementwise / reduction fusions). Writes results/<name>.*.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

_DUMP = tempfile.mkdtemp(prefix="jaxrec_hlo_")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to="
                           f"{_DUMP} --xla_dump_hlo_module_re=multi_step")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results  # noqa: E402

_HLO_LINE = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ")


def op_info(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (result shape, JAX op_name) of an HLO module."""
  info = {}
  for line in hlo_text.splitlines():
    m = _HLO_LINE.match(line)
    if m:
      op = re.search(r'op_name="([^"]+)"', line)
      info[m.group(1)] = (m.group(2), op.group(1) if op else "")
  return info


def classify(name: str, op_name: str) -> tuple[str, str]:
  """(pass, kind) of an executed op from its HLO name and JAX op name."""
  pass_ = ("backward" if "transpose(jvp(" in op_name else
           "forward" if "jvp(" in op_name else "other")
  last = op_name.rsplit("/", 1)[-1]
  if name.startswith("dot") or (name.startswith("ynn_fusion") and (
      "dot_general" in last or last == "transpose")):
    kind = "matmul"
  elif name.startswith(("copy", "wrapped_copy", "bitcast_copy")):
    kind = "copy"
  elif "select" in name:
    kind = "select"
  elif "gather" in name or "scatter" in name:
    kind = "gather/scatter"
  else:
    kind = "elementwise/reduce"
  return pass_, kind


def profile(model: str, steps: int, calls: int) -> tuple[dict, float]:
  """(op name -> thread ns per step, wall seconds per step)."""
  run, _, _ = seq_steps.jax_runner(model, seq_steps.SPECS[model]["batch"],
                                   steps)
  run()
  trace_dir = tempfile.mkdtemp(prefix="jaxrec_trace_")
  with jax.profiler.trace(trace_dir):
    for _ in range(calls):
      run()
  (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
  data = jax.profiler.ProfileData.from_file(path)
  per_op = collections.Counter()
  wall = 0
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        if line.name.startswith("tf_XLAEigen") and not event.name.startswith(
            "ThunkExecutor"):
          per_op[event.name] += event.duration_ns
        if line.name == "python" and event.name.endswith(" run"):
          wall += event.duration_ns
  per_step = {k: v / (calls * steps) for k, v in per_op.items()}
  return per_step, wall / 1e9 / (calls * steps)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="SASRec", choices=seq_steps.SPECS)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--calls", type=int, default=3,
                      help="traced calls after the warm-up")
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--out", default="results")
  parser.add_argument("--name", default=None)
  args = parser.parse_args()
  per_op, wall = profile(args.model, args.steps, args.calls)
  hlo = max(glob.glob(f"{_DUMP}/*multi_step*after_optimizations.txt"),
            key=os.path.getsize)  # the step's module, not its side files
  info = op_info(open(hlo).read())
  total = sum(per_op.values())
  groups = collections.Counter()
  for name, ns in per_op.items():
    groups[classify(name, info.get(name, ("", ""))[1])] += ns
  def row(variant, protocol, ns):
    return results.measured_row(args.model, variant, protocol,
                                "bench_seq shapes",
                                thread_ms_per_step=ns / 1e6, share=ns / total)

  rows = [row(f"{p} {k}", "group", ns) for (p, k), ns in groups.most_common()]
  for name, ns in sorted(per_op.items(), key=lambda kv: -kv[1])[:args.top]:
    shape, op_name = info.get(name, ("?", "?"))
    short = op_name.split("closed_call/", 1)[-1]
    rows.append(row(f"{name} {shape} {short}", "op", ns))
  notes = (
      f"seq_steps.jax_runner('{args.model}') at bench_seq's shapes, "
      f"{args.steps} steps per dispatch, {args.calls} traced calls after "
      f"warm-up. Wall time per step while traced: {wall * 1e3:.1f} ms; "
      f"summed thread time of the executed ops: {total / 1e6:.1f} ms per "
      "step (two pool threads run independent ops at once, so thread time "
      "exceeds wall time; tracing adds overhead). Groups: pass (forward / "
      "backward / other = optimiser and loss glue, from the op's JAX name) "
      "x kind (matmul = a dot or a YNNPACK dot fusion; copy = layout copies "
      "and transposes; select = masks and where; the rest elementwise or "
      "reductions). Then the top ops with their result shape and JAX name.")
  paths = results.write(args.name or f"profile_{args.model.lower()}_step",
                        rows, results.command_line(), args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
