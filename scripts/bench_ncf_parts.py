"""Where an NCF training step spends its time at batch 256.

  pip install -e '.[bench]'   # torch==2.13.0, CPU build
  python scripts/bench_ncf_parts.py

bench_ncf's JAX step (64 predictive factors, ML-1M shapes, lax.scan over
256 steps per dispatch) timed with three optimiser set-ups that differ
only in what happens to the embedding tables: Adam everywhere (the
benchmarked step), plain SGD on the tables with Adam on the dense layers,
and frozen tables (optax.set_to_zero: XLA then drops their gradient's
scatter as well).  The differences split a step into dense compute, the
tables' gradient (zero-filled dense table + scatter) and SGD, and Adam's
extra passes over its two moment tables.  A fourth JAX contender runs
Adam's pass over the tables alone (zero gradient, no model): dense compute
plus that pass is the floor of XLA's exact dense-Adam step here, and a
fifth streams one table-sized array, so that three times it bounds any
kernel's pass by memory traffic alone.  Two more run the hand-written
kernel (jaxrec.kernels.row_adam): the whole step with
optim.tables='row_adam', and the kernel's pass alone.  Two more make the
towers' products by Intel MKL's sgemm (model.matmul='blas',
jaxrec.kernels.blas): the frozen-tables step (the dense part) and the
row_adam step.  PyTorch's Adam
step (bench_ncf's torch_runner) runs beside, so the 3x target's time
budget comes from the same rounds.  Writes results/bench_ncf_parts.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_ncf  # noqa: E402
from jaxrec import kernels, results, timing, xla_flags  # noqa: E402

BATCH, FACTORS, STEPS = 256, 64, 256


def _is_table(path) -> bool:
  """Whether a parameter's tree path is an embedding table's."""
  return "embed" in jax.tree_util.keystr(path)


def embedding_split(tables: optax.GradientTransformation
                    ) -> optax.GradientTransformation:
  """`tables` on every embedding table, Adam 1e-3 on the other parameters."""

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "embed" if _is_table(path) else "dense", params)

  return optax.multi_transform(
      {"embed": tables, "dense": optax.adam(1e-3)}, labels)


SETUPS = {
    "adam": lambda: optax.adam(1e-3),
    "tables_sgd": lambda: embedding_split(optax.sgd(1e-3)),
    "tables_frozen": lambda: embedding_split(optax.set_to_zero()),
}


def table_floats(name: str) -> int:
  """Parameters in the benchmarked model's embedding tables (from its
  parameter shapes, no initialisation run)."""
  ids = jax.ShapeDtypeStruct((1,), jax.numpy.int32)
  shapes = jax.eval_shape(bench_ncf._jax_model(name, FACTORS).init,
                          jax.random.key(0), ids, ids)
  return sum(x.size for path, x in
             jax.tree_util.tree_leaves_with_path(shapes) if _is_table(path))


def _tables(name: str) -> list:
  """The benchmarked model's embedding tables, freshly initialised."""
  ids = jnp.ones((1,), jnp.int32)
  params = jax.jit(bench_ncf._jax_model(name, FACTORS).init)(
      jax.random.key(0), ids, ids)
  return [x for path, x in jax.tree_util.tree_leaves_with_path(params)
          if _is_table(path)]


def _scan_runner(step, carry):
  """(run, examples per call): `step` STEPS times per dispatch (lax.scan,
  carry donated), compiled."""
  scan = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS)[0],
                 donate_argnums=0)
  box = {"c": carry}

  def run():
    box["c"] = scan(box["c"])
    jax.block_until_ready(box["c"])

  run()  # compiles
  return run, STEPS * BATCH


def adam_pass_runner(name: str):
  """(run, examples per call): Adam 1e-3 on the model's embedding tables
  alone with a zero gradient.  No model, gradient table or scatter: only
  the pass over the tables that every exact dense-Adam step makes (each
  row's moments decay even when the batch misses it), so dense_ms plus
  this is a floor for a step whose tables use optax's Adam as XLA
  compiles it."""
  tables, opt = _tables(name), optax.adam(1e-3)

  def step(carry, _):
    tables, opt_state = carry
    zero = jax.tree.map(jnp.zeros_like, tables)
    updates, opt_state = opt.update(zero, opt_state, tables)
    return (optax.apply_updates(tables, updates), opt_state), None

  return _scan_runner(step, (tables, opt.init(tables)))


def kernel_pass_runner(name: str):
  """(run, examples per call): the same pass made by jaxrec.kernels.row_adam
  (no row touched), the table work of optim.tables='row_adam' but the
  batch's few rows."""
  tables = _tables(name)

  def step(carry, _):
    p, m, v, count = carry
    none = [jnp.full((t.shape[0],), -1, jnp.int32) for t in p]
    grads = [jnp.zeros((1, t.shape[1]), jnp.float32) for t in p]
    p, m, v = kernels.row_adam(p, m, v, none, grads, count, 1e-3)
    return (p, m, v, count + 1), None

  zeros = [jnp.zeros_like(t) for t in tables]
  return _scan_runner(step, (tables, zeros, [z + 0 for z in zeros],
                             jnp.int32(0)))


def stream_runner(name: str):
  """(run, examples per call): one array the size of the model's tables
  read and written once per step (x * 0.999, lax.scan, donated).  Exact
  dense Adam must stream three such arrays (parameter and both moments)
  in and out every step, so 3x this is a floor set by memory traffic
  alone, whatever the kernel."""
  return _scan_runner(lambda x, _: (x * 0.999, None),
                      jnp.ones((table_floats(name),), jnp.float32))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  load0 = os.getloadavg()[0]
  peak = timing.matmul_peak_flops()
  rows, per_round_notes = [], []
  for name in ("GMF", "MLP-3", "NeuMF"):
    calls = {k: bench_ncf.jax_runner(name, FACTORS, BATCH, STEPS, make())
             for k, make in SETUPS.items()}
    calls["row_adam"] = bench_ncf.jax_runner(name, FACTORS, BATCH, STEPS,
                                             tables="row_adam")
    calls["tables_frozen_blas"] = bench_ncf.jax_runner(
        name, FACTORS, BATCH, STEPS, SETUPS["tables_frozen"](), matmul="blas")
    calls["row_adam_blas"] = bench_ncf.jax_runner(
        name, FACTORS, BATCH, STEPS, tables="row_adam", matmul="blas")
    calls["adam_pass"] = adam_pass_runner(name)
    calls["kernel_pass"] = kernel_pass_runner(name)
    calls["stream"] = stream_runner(name)
    calls["torch_adam"] = bench_ncf.torch_runner(name, FACTORS, BATCH, 64)
    rates = timing.interleaved_rates(calls, args.rounds, args.repeats)
    ms = {k: 1e3 * BATCH / float(np.median(v)) for k, v in rates.items()}
    per_round_notes.append(f"{name}: " + "; ".join(
        f"{k} " + "/".join(f"{1e3 * BATCH / r:.2f}" for r in v)
        for k, v in rates.items()))
    metrics = {f"{k}_ms_per_step": v for k, v in ms.items()}
    metrics.update({
        "dense_ms": ms["tables_frozen"],
        "blas_dense_ms": ms["tables_frozen_blas"],
        "blas_dense_speedup": ms["tables_frozen"] / ms["tables_frozen_blas"],
        "blas_floor_ms": ms["tables_frozen_blas"] + ms["kernel_pass"],
        "tables_grad_sgd_ms": ms["tables_sgd"] - ms["tables_frozen"],
        "adam_moments_ms": ms["adam"] - ms["tables_sgd"],
        "floor_ms": ms["tables_frozen"] + ms["adam_pass"],
        "kernel_floor_ms": ms["tables_frozen"] + ms["kernel_pass"],
        "row_adam_tables_ms": ms["row_adam"] - ms["tables_frozen"],
        "traffic_floor_ms": ms["tables_frozen"] + 3 * ms["stream"],
        "stream_gb_per_s": 8 * table_floats(name) / ms["stream"] / 1e6,
        "ideal_floor_ms": (1e3 * BATCH * bench_ncf.flops_per_example(
            name, FACTORS) / peak + 3 * ms["stream"]),
        "budget_3x_ms": ms["torch_adam"] / 3,
        "table_params": float(table_floats(name)),
    })
    rows.append({"model": name, "variant": f"factors={FACTORS},batch={BATCH}",
                 "dataset": "ml-1m shapes", "protocol": "train-step",
                 "metrics": {k: {"mean": v, "std": 0.0}
                             for k, v in metrics.items()}})
    print(name, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
  notes = (
      f"JAX: bench_ncf.jax_runner, {STEPS} steps per dispatch (lax.scan, "
      "state donated), milliseconds per step of "
      f"{BATCH} examples; torch_adam: bench_ncf.torch_runner (eager "
      "PyTorch, dense nn.Embedding, torch.optim.Adam); adam_pass: Adam on "
      "the tables alone with a zero gradient (adam_pass_runner: no model, "
      "no gradient table, no scatter); row_adam: bench_ncf.jax_runner with "
      "tables='row_adam' (the same Adam, its tables stepped by "
      "jaxrec.kernels.row_adam); kernel_pass: that kernel's pass alone, no "
      "row touched (kernel_pass_runner); stream: one table-sized array read "
      "and written per step (stream_runner). The eleven take "
      f"turns in {args.rounds} rounds of {args.repeats} timed calls "
      "(timing.interleaved_rates); a figure is the median over rounds. "
      "dense_ms = tables frozen (blas_dense_ms: with MKL's products); "
      "blas_dense_speedup = dense_ms / blas_dense_ms; blas_floor_ms = "
      "blas_dense_ms + kernel_pass_ms; "
      "tables_grad_sgd_ms = SGD on the tables "
      "minus frozen (the dense gradient table: zero fill, scatter of the "
      "batch's rows, one update pass); adam_moments_ms = Adam minus SGD on "
      "the tables (XLA's CPU backend makes no multi-output fusion, so "
      "Adam's first moment, second moment and parameter update are three "
      "passes over each table, two of them reading the gradient table); "
      "floor_ms = dense_ms + adam_pass_ms, the step time with the tables' "
      "work cut to the one pass exact dense Adam cannot skip, as optax's "
      "Adam compiles; kernel_floor_ms = dense_ms + kernel_pass_ms, the same "
      "with row_adam's pass; row_adam_tables_ms = row_adam minus frozen, "
      "all of the tables' work in the row_adam step; "
      "traffic_floor_ms = dense_ms + 3 x stream_ms, the same floor set by "
      "memory traffic alone (three table-sized arrays in and out); "
      "ideal_floor_ms = the dense layers' FLOPs (forward + backward) at the "
      f"measured float32 matmul peak ({peak / 1e9:.0f} GFLOP/s) + 3 x "
      "stream_ms; "
      "budget_3x_ms = the step time the issue's 3x target allows. Per "
      "round, ms per step: " + " | ".join(per_round_notes) + ". "
      f"{xla_flags.describe()} Load average: {load0:.2f} (1 min) at the "
      f"start, {os.getloadavg()[0]:.2f} at the end.")
  paths = results.write("bench_ncf_parts", rows, results.command_line(),
                        args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
