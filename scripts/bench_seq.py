"""SASRec and BERT4Rec training throughput: jaxrec (JAX) against plain
PyTorch, same CPU.

  pip install -e '.[bench]'   # torch==2.13.0, CPU build
  JAXREC_DATA_DIR=/work/shared/data python scripts/bench_seq.py

ML-1M shapes (3,416 items), full-length rows of 200 items, no padding:
SASRec (d 50, 2 blocks, 1 head, dropout 0.2, batch 128, BCE with one sampled
negative per position, Adam 1e-3 b2 0.98) and BERT4Rec (d 64, 2 blocks, 2
heads, dropout 0.1, batch 256, mask prob 0.2, softmax over all items at the
masked positions, AdamW 1e-4 wd 0.01, clip 5).  Sequences/s of the training
step after compilation, both frameworks in this one process on the same
batches, taking turns over several rounds (timing.interleaved_rates: the
median over rounds of each round's median of repeats); achieved dense
FLOP/s against the measured float32 matmul peak; and the wall time of one
real SASRec epoch on Games (experiments/configs/sasrec_games.py).  The JAX
steps are scripts/seq_steps.py's, the PyTorch models scripts/torch_seq.py's.
Writes results/bench_seq.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seq_steps import (  # noqa: E402
    MASK_LAST_SHARE, MASK_PROB, MAX_LEN, N_ITEMS, SPECS, batches,
    flops_per_seq, games_epoch_seconds, jax_runner, rounds_and_repeats)
from torch_seq import torch_runner  # noqa: E402

from jaxrec import results, timing, xla_flags  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--name", default="bench_seq",
                      help="the results table's name (<out>/<name>.md)")
  parser.add_argument("--note", default="",
                      help="The run's conditions, appended to the notes.")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed calls per contender per round (median)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="rounds in which the contenders take turns")
  parser.add_argument("--steps", type=int, default=16,
                      help="JAX steps per dispatch (lax.scan); the trainer "
                      "runs train.steps_per_call, 64 in the SASRec and "
                      "BERT4Rec configs, and 16 keeps a timed BERT4Rec call "
                      "near 25 s")
  parser.add_argument("--torch-steps", type=int, default=2)
  parser.add_argument("--quick", action="store_true",
                      help="smoke mode: batch 8, one repeat, no Games epoch")
  args = parser.parse_args()
  rounds, repeats = rounds_and_repeats(args)
  load0 = os.getloadavg()[0]
  peak = timing.matmul_peak_flops()
  print(f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
  rows, masks, round_notes = [], {}, []
  for name, spec in SPECS.items():
    batch = 8 if args.quick else spec["batch"]
    runners = {"jax": jax_runner(name, batch, args.steps),
               "jax_1step": jax_runner(name, batch, 1)}
    for t in (1, 2):
      runners[f"torch_{t}"] = torch_runner(name, batch, args.torch_steps, t)
    jp, tp = runners["jax"][2], runners["torch_1"][2]
    print(f"{name} params: jax {jp:,}, torch {tp:,}", flush=True)
    assert jp == tp, (name, jp, tp)
    per_round = timing.interleaved_rates(
        {k: v[:2] for k, v in runners.items()}, rounds, repeats)
    rate = {k: float(np.median(v)) for k, v in per_round.items()}
    best = max(rate["torch_1"], rate["torch_2"])
    ratios = [j / max(a, b) for j, a, b in zip(
        per_round["jax"], per_round["torch_1"], per_round["torch_2"])]
    round_notes.append(f"{name}: " + "; ".join(
        f"round {i + 1} jax {j:.0f}, torch 1T {a:.0f} / 2T {b:.0f} seq/s "
        f"({r:.2f}x)" for i, (j, a, b, r) in enumerate(zip(
            per_round["jax"], per_round["torch_1"], per_round["torch_2"],
            ratios))))
    print(round_notes[-1], flush=True)
    if name == "BERT4Rec":
      b = batches(name, 1, batch)
      masks = {"M": b["weights"].shape[1],
               "real": float(b["weights"].sum()) / batch}
    flops = flops_per_seq(name, masks.get("real", 0))
    m = spec["model"]
    rows.append({
        "model": name, "dataset": f"random full rows, {N_ITEMS} items",
        "variant": f"L={MAX_LEN},d={m['dim']},blocks={m['num_blocks']},"
                   f"heads={m['num_heads']},batch={batch}",
        "protocol": "train-step",
        "metrics": {k: {"mean": v, "std": 0.0} for k, v in {
            "jax_seqs_per_s": rate["jax"],
            "jax_1step_seqs_per_s": rate["jax_1step"],
            "torch_1thread_seqs_per_s": rate["torch_1"],
            "torch_2threads_seqs_per_s": rate["torch_2"],
            "ratio_vs_best_torch": float(np.median(ratios)),
            "jax_flops_fraction_of_peak": rate["jax"] * flops / peak,
            "best_torch_flops_fraction_of_peak": best * flops / peak,
            "params": float(jp)}.items()}})
  if not args.quick:
    seconds, steps = games_epoch_seconds(repeats)
    print(f"Games epoch {seconds:.2f} s ({steps} steps)", flush=True)
    rows.append({"model": "SASRec", "variant": "sasrec_games.py config",
                 "dataset": "games (sasrec/Video.txt)",
                 "protocol": "train-epoch",
                 "metrics": {"epoch_s": {"mean": seconds, "std": 0.0},
                             "steps": {"mean": float(steps), "std": 0.0}}})
  load = os.getloadavg()
  notes = (
      f"jax = {args.steps} steps per dispatch via the trainer's launcher "
      "(parallel.make_launcher('single'), jit + lax.scan, state donated) "
      "with the production models, sequential.LOSSES ('bce', 'masked') and "
      "sequential.build_optimizer, on batches from "
      "sequences.next_item_batches / masked_item_batches (random items, "
      "every row one full-length sequence of 200, so no padding); "
      "jax_1step = one step per dispatch. torch = eager PyTorch "
      f"{torch.__version__} with 1 and with 2 intra-op threads (the ratio "
      "is against the faster: oversubscribed OpenMP threads make 2-thread "
      "PyTorch collapse on the shared cores), "
      "nn.MultiheadAttention (need_weights=False, so scaled_dot_product_"
      "attention; SASRec causal via is_causal), torch.optim.Adam / AdamW "
      "(no decay on 1-d parameters) + clip_grad_norm_, one Python step per "
      "batch, the same batches as tensors made before timing. Both: SASRec "
      "with standard pre-LN blocks (models/sasrec.py, sasrec_code=False; "
      "the Games epoch below runs the config's released-code layout), FF "
      "width D, eps 1e-8 (the JAX SASRec's causal attention runs in query "
      f"blocks of {SPECS['SASRec']['model']['causal_block']}, skipping the "
      "hidden upper triangle: models/sasrec.py causal_block, exact; its "
      f"blocks run on {SPECS['SASRec']['model']['row_groups']} independent "
      "groups of rows: models/sasrec.py row_groups, the same function; its "
      "attention's gradient is hand-written: models/attention.py); "
      "BERT4Rec post-LN, tanh-GELU FF 4D (the JAX BERT4Rec's attention "
      "runs over the batch in "
      f"blocks of {SPECS['BERT4Rec']['model']['row_block']} rows, each "
      "recomputed in the backward pass, gradient by autodiff: "
      "models/bert4rec.py row_block, the same function), output "
      f"transform, shared table + bias, mask prob {MASK_PROB} with "
      f"{MASK_LAST_SHARE:.0%} of rows masking only the last item. Both drop "
      "the embeddings, both residual branches, the FF hidden layer and every "
      "attention weight independently (jax: models/dropout.py, each keep "
      "decision a keyed hash of the element's index, fused into the pass "
      "that applies it; torch: nn.Dropout and the attention's own). BERT4Rec "
      f"masks: {masks.get('real', 0):.1f} per sequence on average; the JAX "
      f"step computes the softmax over a fixed budget of M = {masks.get('M')}"
      " slots per batch (sequential.mask_budget: the fullest step of seeded "
      "simulated epochs + 5% + 64; unused slots weighted 0), "
      "torch only over the real masks. Equal parameter counts asserted, "
      "finite losses checked before timing. After compilation / warm-up, "
      f"the four contenders of a model take turns in {rounds} rounds of "
      f"{repeats} timed calls each (timing.interleaved_rates), so the CPU's "
      "drifting speed slows all alike; a figure is the median over rounds "
      "of each round's median; ratio_vs_best_torch is the median over "
      "rounds of that round's jax / faster-torch ratio (paired within a "
      "round). Every round is listed here: "
      f"{' | '.join(round_notes)}. "
      f"Measured float32 matmul peak: {peak / 1e9:.0f} GFLOP/s (jitted "
      "2048^3); flops_fraction_of_peak = seqs/s x analytic dense FLOPs per "
      "sequence (QKV and output projections, QK^T, AV, feed-forward, "
      "BERT4Rec's transform and logits at the real masks, SASRec's "
      "positive/negative dots; forward + backward = 3x forward) / peak. "
      "Games epoch: sasrec_games.py (L=50, d=50, dropout 0.5, batch 128 "
      "users packed into rows), the family's make_epoch_batches (host-side "
      "packing and negatives included), steps_per_call per dispatch, after "
      "a warm-up epoch, no evaluation or checkpoint. "
      f"{xla_flags.describe()} Load average: "
      f"{load0:.2f} (1 min) at the start, {load[0]:.2f} / {load[1]:.2f} / "
      f"{load[2]:.2f} (1/5/15 min) at the end. {args.note}").strip()
  command = results.command_line()
  paths = results.write(args.name, rows, command, args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()

