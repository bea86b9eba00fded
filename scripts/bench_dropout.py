"""Dropout mask generators, alone and inside the training steps.

  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_dropout.py

Generators: 'hash' (models/dropout.keep_mask, production: a keyed integer
hash of each element's index, fused into the pass that applies the mask),
'rbg16' (the generator it replaced, kept here as a reference: XLA's
RngBitGenerator with ThreeFry, 16 bits per element) and 'bernoulli'
(jax.random.bernoulli, behind flax's nn.Dropout).

Part 1: dropout.apply at rate 0.1 on one BERT4Rec attention-weight array
(256, 2, 200, 200), forward alone and forward + gradient, jitted.
Part 2: bench_seq's SASRec and BERT4Rec training steps (seq_steps.jax_runner,
the production models at bench_seq's shapes) compiled once per generator.
Within a part the contenders take turns (timing.interleaved_rates); every
ratio is paired within a round against 'rbg16'.  Writes
results/bench_dropout.*.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results, timing, xla_flags  # noqa: E402
from jaxrec.models import dropout  # noqa: E402

PRODUCTION = dropout.keep_mask


def rbg16_keep_mask(key, rate, shape):
  """The previous generator: 16 bits per element from RngBitGenerator
  (ThreeFry), two elements per 32-bit word, rate rounded to 1/65536."""
  shape = tuple(shape)
  lead, last = shape[:-1], shape[-1]
  _, words = lax.rng_bit_generator(
      jax.random.bits(key, (4,), jnp.uint32), lead + (math.ceil(last / 2),),
      jnp.uint32, algorithm=lax.RandomAlgorithm.RNG_THREE_FRY)
  halves = lax.bitcast_convert_type(words, jnp.uint16)
  halves = halves.reshape(lead + (-1,))[..., :last].reshape(shape)
  return halves >= jnp.uint16(round(rate * (1 << 16)))


def bernoulli_keep_mask(key, rate, shape):
  return jax.random.bernoulli(key, 1.0 - rate, shape)


GENERATORS = {"rbg16": rbg16_keep_mask, "hash": PRODUCTION,
              "bernoulli": bernoulli_keep_mask}


@contextlib.contextmanager
def generator(name):
  """dropout.keep_mask is GENERATORS[name] while tracing inside."""
  dropout.keep_mask = GENERATORS[name]
  try:
    yield
  finally:
    dropout.keep_mask = PRODUCTION


def mask_runners(shape, rate=0.1):
  """name -> (run, 1) for forward and forward + gradient of dropout.apply."""
  x = jax.random.normal(jax.random.key(1), shape)
  key = jax.random.key(0)
  runners = {}
  for name in GENERATORS:
    with generator(name):
      fwd = jax.jit(lambda x, k: dropout.apply(x, k, rate))
      grad = jax.jit(jax.grad(
          lambda x, k: jnp.sum(dropout.apply(x, k, rate) ** 2)))
      jax.block_until_ready((fwd(x, key), grad(x, key)))  # compile here
    for part, f in (("forward", fwd), ("forward+grad", grad)):
      runners[f"{name} {part}"] = (
          lambda f=f: jax.block_until_ready(f(x, key)), 1.0)
  return runners


def main():
  parser = seq_steps.variant_parser(
      "bench_dropout", "smoke mode: small shapes, one round of one call")
  args = parser.parse_args()
  rounds, repeats = seq_steps.rounds_and_repeats(args)
  load0 = os.getloadavg()[0]
  rows, notes = [], []
  shape = (8, 2, 20, 20) if args.quick else (256, 2, 200, 200)
  per = timing.interleaved_rates(mask_runners(shape), rounds, repeats)
  for label, rates in per.items():
    gen, part = label.split(" ")
    ms = 1e3 / np.median(rates)
    ratio = timing.paired_ratio(per, label, f"rbg16 {part}")
    notes.append(f"{label}: " + ", ".join(f"{1e3 / r:.1f}" for r in rates))
    print(f"{label}: {ms:.1f} ms, speed vs rbg16 {ratio:.2f}x", flush=True)
    rows.append(results.measured_row(f"dropout.apply {part}", gen, "mask",
                     f"{shape}, rate 0.1",
                     ms_per_call=ms, speed_vs_rbg16=ratio))
  step_rows, step_notes = seq_steps.race_step_variants(
      {name: functools.partial(generator, name) for name in GENERATORS},
      "rbg16", args)
  rows, notes = rows + step_rows, notes + step_notes
  load = os.getloadavg()
  text = (
      f"Contenders take turns in {rounds} rounds of {repeats} timed calls "
      "after compilation (timing.interleaved_rates); a figure is the median "
      "over rounds; speed_vs_rbg16 is the median over rounds of the round's "
      "rate / rbg16's rate in that round (paired). Steps: seq_steps.jax_runner "
      f"with {args.steps} steps per dispatch, the model's dropout masks from "
      "the named generator (SASRec rate 0.2, BERT4Rec 0.1, on embeddings, "
      "residual branches, the feed-forward hidden layer and every attention "
      "weight). Per round (ms per call for the mask, seq/s for the steps): "
      + " | ".join(notes) + f". {xla_flags.describe()} Load average: "
      f"{load0:.2f} (1 min) at the start, {load[0]:.2f} at the end.")
  paths = results.write(args.name, rows, results.command_line(), args.out,
                        text)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
