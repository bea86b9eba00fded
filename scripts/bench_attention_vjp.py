"""The attention's hand-written VJP (models/attention.py) against jax's
autodiff of the same forward pass, raced in bench_seq's training steps.

  python scripts/bench_attention_vjp.py            # writes results/...
  python scripts/bench_attention_vjp.py --check    # exactness only

SASRec (whole batch, causal query blocks): production uses the
hand-written gradient; the contender 'autodiff' passes hand_vjp=False,
the form main ran before. BERT4Rec (row blocks, each recomputed in the
backward pass): production leaves those blocks to autodiff; the contender
'hand_vjp' passes hand_vjp=True. Same forward pass, same dropout masks,
so the race isolates the backward pass. --check prints both forms' loss
and gradient sums. Contenders are compiled once and take turns
(seq_steps.race_step_variants), paired per round.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seq_steps  # noqa: E402
from jaxrec import results, xla_flags  # noqa: E402
from jaxrec.models import attention  # noqa: E402

CONTENDERS = {"SASRec": ("autodiff", False), "BERT4Rec": ("hand_vjp", True)}


def main():
  parser = seq_steps.variant_parser("bench_attention_vjp",
                                    "smoke mode: batch 8, one round")
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args()
  if args.check:
    return seq_steps.check_attention({
        f"hand_vjp={flag}": functools.partial(attention.dot_product_attention,
                                              hand_vjp=flag)
        for flag in (True, False)}, 8)
  rows, notes = [], []
  for model, (label, flag) in CONTENDERS.items():
    got = seq_steps.race_step_variants(
        {"production": contextlib.nullcontext,
         label: seq_steps.models_attention(functools.partial(
             attention.dot_product_attention, hand_vjp=flag))},
        "production", args, models=(model,))
    rows += got[0]
    notes += got[1]
  paths = results.write(
      args.name, rows, results.command_line(), args.out,
      f"seq_steps.jax_runner's steps at bench_seq's shapes, {args.steps} "
      "steps per dispatch. SASRec: production = models/attention.py's "
      "hand-written gradient, autodiff = hand_vjp=False (the same forward "
      "pass left to jax's autodiff, as main ran before). BERT4Rec (row "
      "blocks of 8): production = autodiff in the row blocks (hand_vjp's "
      "default there), hand_vjp = hand_vjp=True. Per round, seq/s: "
      + " | ".join(notes) + f". {xla_flags.describe()}")
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
