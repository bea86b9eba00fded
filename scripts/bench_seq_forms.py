"""Forms of one computation in the transformer steps, each against the
form it replaced.

  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_seq_forms.py

The matmul form: 'flat' (models/matmul.flat_dot_general, production: a
Dense layer's leading axes flattened, so the product and its kernel
gradient are 2-D) against 'dot3d' (lax.dot_general on the (B, L, D) input,
kept here as the reference; its kernel gradient contracts two axes at
once).
Part 1: one Dense layer, forward + gradient with respect to input and
kernel, at the blocks' shapes in bench_seq (SASRec 128 x 200 rows, 50 ->
50; BERT4Rec 256 x 200 rows, 64 -> 256).
Part 2: bench_seq's SASRec and BERT4Rec training steps (seq_steps.jax_runner,
the production models at bench_seq's shapes) compiled once per contender.
Within a part the contenders take turns (timing.interleaved_rates); every
ratio is paired within a round against 'dot3d'.  Writes
results/bench_seq_forms.*. (At 64f2979 it also raced the attention mask
added as a bias against the select; no gain, so main kept the select:
results/bench_seq_forms.md.)
"""

from __future__ import annotations

import functools
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results, timing, xla_flags  # noqa: E402
from jaxrec.models import matmul  # noqa: E402

CONTENDERS = {"dot3d": lax.dot_general, "flat": matmul.flat_dot_general}

DENSE_SHAPES = {"SASRec": (128, 200, 50, 50), "BERT4Rec": (256, 200, 64, 256)}


def dense_runners(shape):
  """name -> (run, 1): jitted forward + gradient (input and kernel) of
  sum(tanh(x @ w)) for x (B, L, D), w (D, E)."""
  b, l, d, e = shape
  x = jax.random.normal(jax.random.key(1), (b, l, d))
  w = jax.random.normal(jax.random.key(2), (d, e)) / np.sqrt(d)
  runners = {}
  for name, dot in CONTENDERS.items():
    loss = lambda x, w, dot=dot: jnp.sum(jnp.tanh(dot(
        x, w, (((2,), (0,)), ((), ())))))
    f = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(f(x, w))  # compile here
    runners[name] = (lambda f=f: jax.block_until_ready(f(x, w)), 1.0)
  return runners


def main():
  parser = seq_steps.variant_parser(
      "bench_seq_forms", "smoke mode: small shapes, one round of one call")
  args = parser.parse_args()
  rounds, repeats = seq_steps.rounds_and_repeats(args)
  load0 = os.getloadavg()[0]
  rows, notes = [], []
  for model, shape in DENSE_SHAPES.items():
    shape = (4, 10) + shape[2:] if args.quick else shape
    per = timing.interleaved_rates(dense_runners(shape), rounds, repeats)
    for name, rates in per.items():
      ms = 1e3 / np.median(rates)
      ratio = timing.paired_ratio(per, name, "dot3d")
      notes.append(f"Dense {shape} {name}: "
                   + ", ".join(f"{1e3 / r:.2f}" for r in rates))
      print(f"Dense {shape} {name}: {ms:.2f} ms, vs dot3d {ratio:.2f}x",
            flush=True)
      rows.append(results.measured_row(
          "Dense fwd+grad", name, "layer", f"{model} block, {shape}",
          ms_per_call=ms, speed_vs_dot3d=ratio))
  step_rows, step_notes = seq_steps.race_step_variants(
      {name: functools.partial(mock.patch.object, matmul, "flat_dot_general",
                               dot) for name, dot in CONTENDERS.items()},
      "dot3d", args)
  rows, notes = rows + step_rows, notes + step_notes
  load = os.getloadavg()
  text = (
      f"Contenders take turns in {rounds} rounds of {repeats} timed calls "
      "after compilation (timing.interleaved_rates); a figure is the median "
      "over rounds; speed_vs_dot3d is the median over rounds of the round's "
      "rate / dot3d's rate in that round (paired). Dense rows: one jitted "
      "call of the gradient of sum(tanh(x @ w)) with respect to x and w; "
      "shape = (B, L, D, E). Steps: seq_steps.jax_runner with "
      f"{args.steps} steps per dispatch; every Dense layer of the blocks "
      "(attention query, key, value and output projections, feed-forward) "
      "and BERT4Rec's output transform use the contender. Per round (ms per "
      "call for Dense, seq/s for the steps): " + " | ".join(notes)
      + f". {xla_flags.describe()} Load average: {load0:.2f} (1 min) at the "
      f"start, {load[0]:.2f} at the end.")
  paths = results.write(args.name, rows, results.command_line(), args.out,
                        text)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
