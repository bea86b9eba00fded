"""Two forms of one computation in the transformer steps, each against
the form it replaced.

  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_seq_forms.py

Forms (production first, then the reference kept here):
  matmul: 'flat' (models/matmul.flat_dot_general: a Dense layer's leading
    axes flattened, so the product and its kernel gradient are 2-D) against
    'dot3d' (lax.dot_general on the (B, L, D) input; its kernel gradient
    contracts two axes at once);
  mask: 'bias' (models/dropout.mask_logits: the attention mask added as a
    bias of the most negative float, whose gradient is the identity)
    against 'select' (jnp.where on the logits, whose gradient is a second
    select).
Part 1: one Dense layer, forward + gradient with respect to input and
kernel, at the blocks' shapes in bench_seq (SASRec 128 x 200 rows, 50 ->
50; BERT4Rec 256 x 200 rows, 64 -> 256), flat against dot3d.
Part 2: bench_seq's SASRec and BERT4Rec training steps (bench_seq.jax_runner,
the production models at bench_seq's shapes), compiled once per contender:
'production' (flat, bias), 'dot3d' (bias), 'select' (flat) and 'before'
(dot3d, select: the step as it was before both).
Within a part the contenders take turns (timing.interleaved_rates); every
ratio is paired within a round against the reference ('dot3d' in part 1,
'before' in part 2).  Writes results/bench_seq_forms.*.
"""

from __future__ import annotations

import os
import sys
from unittest import mock

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_seq  # noqa: E402
from jaxrec import results, timing, xla_flags  # noqa: E402
from jaxrec.models import dropout, matmul  # noqa: E402

CONTENDERS = {"dot3d": lax.dot_general, "flat": matmul.flat_dot_general}


def select_mask_logits(logits, mask):
  """The previous form: a select, whose gradient is another select."""
  return jnp.where(mask, logits, jnp.finfo(logits.dtype).min)


def _reference(matmul_form: bool, mask_form: bool):
  """A context in which the named forms are the references."""
  stack = contextlib.ExitStack()
  if matmul_form:
    stack.enter_context(mock.patch.object(matmul, "flat_dot_general",
                                          lax.dot_general))
  if mask_form:
    stack.enter_context(mock.patch.object(dropout, "mask_logits",
                                          select_mask_logits))
  return stack


STEPS = {"before": (True, True), "production": (False, False),
         "dot3d": (True, False), "select": (False, True)}
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


def step_runners(model, steps, batch):
  """name -> (run, sequences per call) of the step, traced with STEPS[name]'s
  forms replaced by their references."""
  runners = {}
  for name, forms in STEPS.items():
    with _reference(*forms):
      run, n, _ = bench_seq.jax_runner(model, batch, steps)
    runners[name] = (run, n)
  return runners


def main():
  parser = bench_seq.variant_parser(
      "bench_seq_forms", "smoke mode: small shapes, one round of one call")
  args = parser.parse_args()
  rounds, repeats = (1, 1) if args.quick else (args.rounds, args.repeats)
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
          ms_per_call=ms, speed_vs_reference=ratio))
  for model in ("SASRec", "BERT4Rec"):
    batch = 8 if args.quick else bench_seq.SPECS[model]["batch"]
    per = timing.interleaved_rates(step_runners(model, args.steps, batch),
                                   rounds, repeats)
    for name, rates in per.items():
      ratio = timing.paired_ratio(per, name, "before")
      notes.append(f"{model} {name}: " + ", ".join(f"{r:.0f}" for r in rates))
      print(f"{model} {name}: {np.median(rates):.0f} seq/s, vs before "
            f"{ratio:.2f}x", flush=True)
      rows.append(results.measured_row(
          model, name, "train-step", f"bench_seq shapes, batch {batch}",
          seqs_per_s=np.median(rates), speed_vs_reference=ratio))
  load = os.getloadavg()
  text = (
      f"Contenders take turns in {rounds} rounds of {repeats} timed calls "
      "after compilation (timing.interleaved_rates); a figure is the median "
      "over rounds; speed_vs_reference is the median over rounds of the "
      "round's rate / the reference's rate in that round (paired; dot3d for "
      "the Dense rows, before for the steps). Dense rows: one jitted "
      "call of the gradient of sum(tanh(x @ w)) with respect to x and w; "
      "shape = (B, L, D, E). Steps: bench_seq.jax_runner with "
      f"{args.steps} steps per dispatch. matmul form: every Dense layer of "
      "the blocks (attention query, key, value and output projections, "
      "feed-forward) and BERT4Rec's output transform; mask form: every "
      "attention's mask (SASRec causal, BERT4Rec padding). production = "
      "flat + bias, dot3d = dot3d + bias, select = flat + select, before = "
      "dot3d + select. Per round (ms per "
      "call for Dense, seq/s for the steps): " + " | ".join(notes)
      + f". {xla_flags.describe()} Load average: {load0:.2f} (1 min) at the "
      f"start, {load[0]:.2f} at the end.")
  paths = results.write(args.name, rows, results.command_line(), args.out,
                        text)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
