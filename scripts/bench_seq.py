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
median over rounds of each round's median of repeats); achieved dense FLOP/s against the measured
float32 matmul peak; and the wall time of one real SASRec epoch on Games
(experiments/configs/sasrec_games.py).  Writes results/bench_seq.*.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import parallel, results, timing, xla_flags  # noqa: E402
from jaxrec.data import negatives, sequences  # noqa: E402
from jaxrec.data.datasets import resolve_data_dir  # noqa: E402
from jaxrec.train import sequential  # noqa: E402
from jaxrec.train.step import TrainState  # noqa: E402

N_ITEMS, MAX_LEN, MASK_PROB, MASK_LAST_SHARE = 3416, 200, 0.2, 0.1
SPECS = {
    "SASRec": dict(
        batch=128, loss="bce",
        model=dict(name="sasrec", max_len=MAX_LEN, dim=50, num_blocks=2,
                   num_heads=1, dropout=0.2, pre_ln=True, causal_block=50),
        optim=dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.98,
                   weight_decay=0.0, clip_norm=0.0, schedule="constant")),
    "BERT4Rec": dict(
        batch=256, loss="masked",
        model=dict(name="bert4rec", max_len=MAX_LEN, dim=64, num_blocks=2,
                   num_heads=2, dropout=0.1, row_block=8),
        optim=dict(name="adamw", learning_rate=1e-4, b1=0.9, b2=0.999,
                   weight_decay=0.01, clip_norm=5.0, schedule="constant"))}


def _batches(name, steps, batch, seed=0):
  """(S, B, ...) batches from the real builders on random full rows."""
  rng = np.random.default_rng(seed)
  users = np.arange(1, steps * batch + 1)
  width = MAX_LEN + 1 if name == "SASRec" else MAX_LEN  # + SASRec's target
  table = rng.integers(1, N_ITEMS + 1, (users.size + 1, width), np.int32)
  table[0] = 0
  lengths = np.full(users.size + 1, MAX_LEN)
  packing = sequences.packed_epoch(users, lengths, MAX_LEN, steps, batch, rng)
  if name == "SASRec":
    positives = negatives.PositiveSets.build(
        np.repeat(users, width), table[1:].ravel(), users.size, N_ITEMS)
    return sequences.next_item_batches(table, packing, positives, rng)
  budget = sequential.mask_budget(
      lengths, users, MAX_LEN, steps, batch, ml_collections.ConfigDict(dict(
          seed=seed, train=dict(mask_prob=MASK_PROB,
                                mask_last_share=MASK_LAST_SHARE))))
  return sequences.masked_item_batches(
      table, packing, rng, mask_prob=MASK_PROB, mask_id=N_ITEMS + 1,
      mask_last_share=MASK_LAST_SHARE, budget=budget)


def jax_runner(name, batch, steps, **model_options):
  """(run, sequences per call, params): `steps` training steps per dispatch
  of the production model (SPECS[name]'s, with `model_options` replacing
  its entries), compiled and checked finite."""
  spec = SPECS[name]
  model = sequential.build_model(
      ml_collections.ConfigDict({**spec["model"], **model_options}), N_ITEMS)
  tx = sequential.build_optimizer(ml_collections.ConfigDict(spec["optim"]),
                                  total_steps=1)
  params = model.init(jax.random.key(0), jnp.ones((1, MAX_LEN), jnp.int32))[
      "params"]
  n_params = sum(x.size for x in jax.tree.leaves(params))
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  launcher = parallel.make_launcher("single", sequential.LOSSES[spec["loss"]],
                                    batch)
  box = {"s": launcher.put_state(state)}
  placed = launcher.put_batches(_batches(name, steps, batch))

  def run():
    box["s"], m = launcher.run(box["s"], placed, jax.random.key(0))
    box["loss"] = np.asarray(jax.block_until_ready(m)["loss"])

  run()  # compiles; sanity before timing
  assert np.all(np.isfinite(box["loss"])), (name, box["loss"])
  print(f"{name} jax S={steps}: loss {box['loss'][-1]:.4f}", flush=True)
  return run, steps * batch, n_params


class Block(nn.Module):
  """layers.TransformerBlock: MHA and FF, each with dropout, residual, LN."""

  def __init__(self, d, heads, ff, dropout, pre_ln, act, eps):
    super().__init__()
    self.attn = nn.MultiheadAttention(d, heads, dropout=dropout,
                                      batch_first=True)
    self.ff = nn.Sequential(nn.Linear(d, ff), act, nn.Dropout(dropout),
                            nn.Linear(ff, d))
    self.ln_attn, self.ln_ff = nn.LayerNorm(d, eps), nn.LayerNorm(d, eps)
    self.drop, self.pre_ln = nn.Dropout(dropout), pre_ln

  def forward(self, x, causal_mask=None):
    def attend(h):
      return self.attn(h, h, h, attn_mask=causal_mask, need_weights=False,
                       is_causal=causal_mask is not None)[0]
    if self.pre_ln:
      x = x + self.drop(attend(self.ln_attn(x)))
      return x + self.drop(self.ff(self.ln_ff(x)))
    x = self.ln_attn(x + self.drop(attend(x)))
    return self.ln_ff(x + self.drop(self.ff(x)))


class TorchSASRec(nn.Module):
  """models/sasrec.py: embeddings * sqrt(D) + positions, pre-LN ReLU blocks
  with FF width D, padding zeroed after each block, final LN."""

  def __init__(self, dim, num_blocks, num_heads, dropout, **_):
    super().__init__()
    self.item = nn.Embedding(N_ITEMS + 1, dim)
    self.pos = nn.Embedding(MAX_LEN, dim)
    self.drop, self.dim = nn.Dropout(dropout), dim
    self.blocks = nn.ModuleList(
        Block(dim, num_heads, dim, dropout, True, nn.ReLU(), 1e-8)
        for _ in range(num_blocks))
    self.final_ln = nn.LayerNorm(dim, 1e-8)
    causal = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).triu(1)
    self.register_buffer("causal", causal, persistent=False)
    for p in self.parameters():
      if p.dim() == 2:
        nn.init.xavier_uniform_(p)

  def loss(self, seq, pos, neg):
    valid = (seq != 0).unsqueeze(-1).float()
    x = self.item(seq) * self.dim ** 0.5 + self.pos.weight
    x = self.drop(x) * valid
    for block in self.blocks:
      x = block(x, self.causal) * valid
    h = self.final_ln(x)
    pl, nl = (h * self.item(pos)).sum(-1), (h * self.item(neg)).sum(-1)
    w = (pos != 0).float()
    per = (F.binary_cross_entropy_with_logits(pl, torch.ones_like(pl),
                                              reduction="none")
           + F.binary_cross_entropy_with_logits(nl, torch.zeros_like(nl),
                                                reduction="none"))
    return (per * w).sum() / w.sum().clamp(min=1)


class TorchBERT4Rec(nn.Module):
  """models/bert4rec.py: embeddings + positions, LN, post-LN GELU blocks
  with FF width 4D, output transform (dense, GELU, LN), shared table + bias;
  softmax over ids 0..n_items (padding excluded) at the masked positions."""

  def __init__(self, dim, num_blocks, num_heads, dropout, **_):
    super().__init__()
    self.item = nn.Embedding(N_ITEMS + 2, dim)
    self.pos = nn.Embedding(MAX_LEN, dim)
    self.embed_ln, self.drop = nn.LayerNorm(dim, 1e-12), nn.Dropout(dropout)
    gelu = nn.GELU(approximate="tanh")  # flax's nn.gelu default
    self.blocks = nn.ModuleList(
        Block(dim, num_heads, 4 * dim, dropout, False, gelu, 1e-12)
        for _ in range(num_blocks))
    self.transform = nn.Sequential(nn.Linear(dim, dim), gelu,
                                   nn.LayerNorm(dim, 1e-12))
    self.output_bias = nn.Parameter(torch.zeros(N_ITEMS + 2))
    for p in self.parameters():
      if p.dim() == 2:
        nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

  def loss(self, seq, positions, labels):
    x = self.drop(self.embed_ln(self.item(seq) + self.pos.weight))
    for block in self.blocks:
      x = block(x)
    out = self.transform(x).reshape(-1, x.shape[-1])[positions]     # (M, D)
    logits = (out @ self.item.weight[:N_ITEMS + 1].T
              + self.output_bias[:N_ITEMS + 1])
    logits[:, 0] = -torch.inf                   # padding is never an answer
    return F.cross_entropy(logits, labels)


def torch_runner(name, batch, steps, threads):
  """(run, sequences per call, params): eager PyTorch on the same batches
  with `threads` intra-op threads, warmed up and checked finite."""
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  spec = SPECS[name]
  model = {"SASRec": TorchSASRec, "BERT4Rec": TorchBERT4Rec}[name](
      **spec["model"])
  n_params = sum(p.numel() for p in model.parameters())
  o = spec["optim"]
  if o["name"] == "adam":
    opt = torch.optim.Adam(model.parameters(), lr=o["learning_rate"],
                           betas=(o["b1"], o["b2"]))
  else:  # no decay on biases and norm scales (the 1-d parameters)
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2]},
              {"params": [p for p in model.parameters() if p.dim() < 2],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=o["learning_rate"],
                            betas=(o["b1"], o["b2"]),
                            weight_decay=o["weight_decay"])
  data = _batches(name, steps, batch)
  t = lambda k, s: torch.from_numpy(data[k][s]).long()
  if name == "SASRec":
    inputs = [(t("seq", s), t("pos", s), t("neg", s)) for s in range(steps)]
  else:  # only the real masks (the JAX step also computes the unused slots)
    keep = [data["weights"][s] > 0 for s in range(steps)]
    inputs = [(t("seq", s), t("positions", s)[keep[s]],
               t("labels", s)[keep[s]]) for s in range(steps)]
  box = {}

  def run():
    torch.set_num_threads(threads)  # the runners take turns
    for args in inputs:
      opt.zero_grad(set_to_none=True)
      loss = model.loss(*args)
      loss.backward()
      if o["clip_norm"]:
        nn.utils.clip_grad_norm_(model.parameters(), o["clip_norm"])
      opt.step()
    box["loss"] = loss.item()

  run()  # warm-up; sanity before timing
  assert np.isfinite(box["loss"]), (name, box["loss"])
  print(f"{name} torch {threads}T: loss {box['loss']:.4f}", flush=True)
  return run, steps * batch, n_params


def flops_per_seq(name, masks_per_seq):
  """Dense FLOPs of forward + backward (3x forward) per sequence: attention
  projections, QK^T, AV, feed-forward, output transform and logits."""
  m = SPECS[name]["model"]
  d, L = m["dim"], MAX_LEN
  ff = d if name == "SASRec" else 4 * d
  block = 2 * L * 4 * d * d + 2 * 2 * L * L * d + 2 * 2 * L * d * ff
  if name == "SASRec":
    out = 2 * 2 * L * d                              # positive and negative
  else:
    out = 2 * L * d * d + 2 * masks_per_seq * d * (N_ITEMS + 1)
  return 3 * (m["num_blocks"] * block + out)


def games_epoch_seconds(repeats):
  """One SASRec epoch on Games through the trainer's pieces: the family's
  epoch batches (packing, negatives), its loss, optimiser and launcher,
  `steps_per_call` steps per dispatch; no evaluation or checkpoints."""
  from experiments.configs import sasrec_games
  config = sasrec_games.get_config()
  data = sequences.load(config.data.name, resolve_data_dir(config.data.dir),
                        k_core_min=config.data.k_core)
  split = sequences.leave_one_out(data)
  model = sequential.build_model(config.model, split.train.n_items)
  epoch_batches, steps = sequential.make_epoch_batches(split, config, model)
  tx = sequential.build_optimizer(config.optim, steps * config.train.epochs)
  params = model.init(jax.random.key(config.seed), jnp.ones(
      (1, config.model.max_len), jnp.int32))["params"]
  tc = config.train
  launcher = parallel.make_launcher(tc.launcher,
                                    sequential.LOSSES[tc.loss], tc.batch_size)
  box = {"s": launcher.put_state(TrainState.create(
      apply_fn=model.apply, params=params, tx=tx)), "epoch": 0}
  key = jax.random.split(jax.random.key(config.seed))[1]

  def epoch():
    batches = epoch_batches(box["epoch"], negatives.epoch_rng(
        config.seed, box["epoch"]))
    box["epoch"] += 1
    for lo in range(0, steps, tc.steps_per_call):
      chunk = jax.tree.map(lambda v: v[lo:lo + tc.steps_per_call], batches)
      box["s"], _ = launcher.run(box["s"], launcher.put_batches(chunk), key)
    jax.block_until_ready(box["s"])

  return timing.median_seconds(epoch, repeats, warmup=1), steps


def variant_parser(name: str, quick_help: str) -> argparse.ArgumentParser:
  """The flags of the scripts that race variants of these steps in turns
  (bench_seq_ablation, bench_dropout, bench_seq_forms): --out, --name,
  --steps (per dispatch, default 4), --rounds, --repeats and --quick."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--name", default=name)
  parser.add_argument("--steps", type=int, default=4,
                      help="training steps per dispatch (lax.scan)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help=quick_help)
  return parser


def race_step_variants(contexts: dict, reference: str, args) -> tuple:
  """Races the SASRec and BERT4Rec steps (jax_runner) compiled once per
  entry of `contexts` (name -> a factory of the context manager in which
  that contender is traced), taking turns (timing.interleaved_rates) for
  variant_parser's `args`. Returns (rows, per-round notes), each rate paired
  within its round against `reference` (speed_vs_<reference>)."""
  rounds, repeats = (1, 1) if args.quick else (args.rounds, args.repeats)
  rows, notes = [], []
  for model in ("SASRec", "BERT4Rec"):
    batch = 8 if args.quick else SPECS[model]["batch"]
    runners = {}
    for name, context in contexts.items():
      with context():
        runners[name] = jax_runner(model, batch, args.steps)[:2]
    per = timing.interleaved_rates(runners, rounds, repeats)
    for name, rates in per.items():
      ratio = timing.paired_ratio(per, name, reference)
      notes.append(f"{model} {name}: " + ", ".join(f"{r:.0f}" for r in rates))
      print(f"{model} {name}: {np.median(rates):.0f} seq/s, vs {reference} "
            f"{ratio:.2f}x", flush=True)
      rows.append(results.measured_row(
          model, name, "train-step", f"bench_seq shapes, batch {batch}",
          seqs_per_s=np.median(rates), **{f"speed_vs_{reference}": ratio}))
  return rows, notes


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
  repeats = 1 if args.quick else args.repeats
  load0 = os.getloadavg()[0]
  peak = timing.matmul_peak_flops()
  print(f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
  rows, masks, round_notes = [], {}, []
  rounds = 1 if args.quick else args.rounds
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
      b = _batches(name, 1, batch)
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
      "hidden upper triangle: models/sasrec.py causal_block, exact); "
      "BERT4Rec post-LN, tanh-GELU FF 4D (the JAX BERT4Rec's attention "
      "runs over the batch in "
      f"blocks of {SPECS['BERT4Rec']['model']['row_block']} rows, each "
      "recomputed in the backward pass: models/bert4rec.py row_block, the "
      "same function), output "
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
