"""The JAX side of the sequential-model benchmarks: bench_seq's shapes, batches
and training steps, with no PyTorch import.

scripts/bench_seq.py races these steps against scripts/torch_seq.py's PyTorch
models; bench_seq_ablation, bench_dropout, bench_seq_forms, bench_xla_flags,
profile_seq_step and gpu_check time or trace them alone, so they run where
torch is not installed.

ML-1M shapes (3,416 items), full-length rows of 200 items, no padding:
SASRec (d 50, 2 blocks, 1 head, dropout 0.2, batch 128, BCE with one sampled
negative per position, Adam 1e-3 b2 0.98) and BERT4Rec (d 64, 2 blocks, 2
heads, dropout 0.1, batch 256, mask prob 0.2, softmax over all items at the
masked positions, AdamW 1e-4 wd 0.01, clip 5).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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
                   num_heads=1, dropout=0.2, pre_ln=True, causal_block=50,
                   row_groups=8),
        optim=dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.98,
                   weight_decay=0.0, clip_norm=0.0, schedule="constant")),
    "BERT4Rec": dict(
        batch=256, loss="masked",
        model=dict(name="bert4rec", max_len=MAX_LEN, dim=64, num_blocks=2,
                   num_heads=2, dropout=0.1, row_block=8),
        optim=dict(name="adamw", learning_rate=1e-4, b1=0.9, b2=0.999,
                   weight_decay=0.01, clip_norm=5.0, schedule="constant"))}


def batches(name, steps, batch, seed=0):
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
  placed = launcher.put_batches(batches(name, steps, batch))

  def run():
    box["s"], m = launcher.run(box["s"], placed, jax.random.key(0))
    box["loss"] = np.asarray(jax.block_until_ready(m)["loss"])

  run()  # compiles; sanity before timing
  assert np.all(np.isfinite(box["loss"])), (name, box["loss"])
  print(f"{name} jax S={steps}: loss {box['loss'][-1]:.4f}", flush=True)
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
    data = epoch_batches(box["epoch"], negatives.epoch_rng(
        config.seed, box["epoch"]))
    box["epoch"] += 1
    for lo in range(0, steps, tc.steps_per_call):
      chunk = jax.tree.map(lambda v: v[lo:lo + tc.steps_per_call], data)
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


def rounds_and_repeats(args) -> tuple[int, int]:
  """(rounds, timed calls per round) for variant_parser's `args`: one of
  each in --quick (smoke) mode."""
  return (1, 1) if args.quick else (args.rounds, args.repeats)


def race_step_variants(contexts: dict, reference: str, args,
                       models: tuple = ("SASRec", "BERT4Rec")) -> tuple:
  """Races the steps of `models` (jax_runner) compiled once per entry of
  `contexts` (name -> a factory of the context manager in which that
  contender is traced), taking turns (timing.interleaved_rates) for
  variant_parser's `args`. Returns (rows, per-round notes), each rate paired
  within its round against `reference` (speed_vs_<reference>)."""
  rounds, repeats = rounds_and_repeats(args)
  rows, notes = [], []
  for model in models:
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


def check_attention(fns: dict, depth: int):
  """Prints the loss and gradient sums of each attention_fn in `fns` (name
  -> function with attention.dot_product_attention's signature) on a causal
  toy with dropout and head width `depth`; they must agree to rounding."""
  b, l = 4, 20
  q, k, v = jax.random.normal(jax.random.key(0), (3, b, l, 1, depth))
  mask = jnp.tril(jnp.ones((l, l), bool))[None, None]
  for name, fn in fns.items():
    def loss(q, k, v, fn=fn):
      o = fn(q, k, v, mask=mask, broadcast_dropout=False,
             dropout_rng=jax.random.key(3), dropout_rate=0.3, causal_block=5)
      return jnp.sum(jnp.sin(o))
    val, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v)
    print(name, float(val), [float(jnp.abs(g).sum()) for g in grads])


def models_attention(fn):
  """A factory of the context in which the models' attention (the name
  models/layers.py calls) is `fn`: only that name, so `fn` may itself call
  attention.dot_product_attention."""
  return functools.partial(
      mock.patch, "jaxrec.models.layers.dot_product_attention", fn)


def attention_probe_main(name: str, label: str, attention, depth: int,
                         described: str):
  """The command line of a probe that races `attention` (an attention_fn
  with attention.dot_product_attention's signature, named `label`) against
  production in the SASRec step, paired per round, and writes
  results/<name>. The contender's models are traced inside
  models_attention(attention). `--check` runs check_attention on both at
  head width `depth` instead. `described` says what the variant is, for
  the results note."""
  from jaxrec.models import attention as production
  parser = variant_parser(name, "smoke mode: batch 8, one round")
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args()
  if args.check:
    return check_attention({"production": production.dot_product_attention,
                            label: attention}, depth)

  load0 = os.getloadavg()[0]
  rows, notes = race_step_variants(
      {"production": contextlib.nullcontext,
       label: models_attention(attention)},
      "production", args, models=("SASRec",))
  load = os.getloadavg()
  paths = results.write(
      args.name, rows, results.command_line(), args.out,
      f"seq_steps.jax_runner's SASRec step at bench_seq's shapes, "
      f"{args.steps} steps per dispatch; {label} = {described}, production "
      "= models/attention.dot_product_attention. Per round, seq/s: "
      + " | ".join(notes) + f". {xla_flags.describe()} Load average: "
      f"{load0:.2f} (1 min) at the start, {load[0]:.2f} at the end.")
  print(paths[1].read_text())
