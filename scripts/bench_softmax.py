"""The softmax over all items: `losses.full_softmax` (chunked, own VJP)
against optax's cross-entropy on the materialised (M, V) logit matrix.

  python scripts/bench_softmax.py

Loss and gradients with respect to hidden, table and bias, jitted, at
BERT4Rec's Beauty sizes (M 1,600 masked slots, V 54,543 ids, D 64):
seconds per call after compilation, median of repeats, both in this one
process.  Writes results/bench_softmax.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import losses, results, timing  # noqa: E402

M, V, D = 1600, 54543, 64


def _inputs():
  keys = jax.random.split(jax.random.key(0), 3)
  hidden = 0.1 * jax.random.normal(keys[0], (M, D))
  table = 0.02 * jax.random.normal(keys[1], (V, D))
  bias = jnp.zeros((V,)).at[0].set(-jnp.inf)
  labels = jax.random.randint(keys[2], (M,), 1, V)
  return hidden, table, bias, labels


def dense(hidden, table, bias, labels):
  return optax.softmax_cross_entropy_with_integer_labels(
      hidden @ table.T + bias[None, :], labels).mean()


def chunked(hidden, table, bias, labels, chunk):
  return losses.full_softmax(hidden, table, bias, labels, chunk).mean()


def seconds(loss, args, repeats):
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  return timing.median_seconds(
      lambda: jax.block_until_ready(grad(*args)), repeats)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  inputs = _inputs()
  base = seconds(dense, inputs, args.repeats)
  rows = [{"model": "optax dense", "variant": "(M, V) logits",
           "protocol": "loss+grad", "metrics": {
               "seconds": {"mean": base, "std": 0.0},
               "speedup": {"mean": 1.0, "std": 0.0}}}]
  for chunk in (1024, 2048, 4096):
    s = seconds(lambda h, t, b, l, c=chunk: chunked(h, t, b, l, c), inputs,
                args.repeats)
    rows.append({"model": "full_softmax", "variant": f"chunk={chunk}",
                 "protocol": "loss+grad", "metrics": {
                     "seconds": {"mean": s, "std": 0.0},
                     "speedup": {"mean": base / s, "std": 0.0}}})
  load = os.getloadavg()
  notes = (f"M {M}, V {V}, D {D}, float32; value_and_grad with respect to "
           f"hidden, table and bias, jitted; median of {args.repeats} after "
           f"a warm-up call. Load average at the end: {load[0]:.2f} / "
           f"{load[1]:.2f} / {load[2]:.2f} (1/5/15 min).")
  command = results.command_line()
  paths = results.write("bench_softmax", rows, command, args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
