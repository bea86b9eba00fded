"""Train-step throughput with XLA's CPU defaults (what jaxrec runs with)
against YNNPACK fusions off (jaxrec/xla_flags.py YNN_OFF) and against
glibc's malloc asking for transparent huge pages
(GLIBC_TUNABLES=glibc.malloc.hugetlb=1), same machine, same run.

  pip install -e .   # no torch needed: the JAX steps only
  python scripts/bench_xla_flags.py

XLA reads its flags once, when JAX's backend starts, and glibc its
tunables when the process starts, so each setting runs in a child process;
the settings alternate over `--rounds` rounds and each cell is the median
over rounds (this CPU's speed drifts over minutes).
Workloads: the JAX steps of scripts/bench_seq.py (SASRec, BERT4Rec at max
length 200) and scripts/bench_ncf.py (GMF, MLP-3, NeuMF at 64 factors,
batch 256), examples or sequences per second after compilation.
Writes results/bench_xla_flags.*.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import results, timing, xla_flags  # noqa: E402

# setting -> environment of its child process
SETTINGS = {"xla_defaults": {"XLA_FLAGS": ""},
            "ynn_off": {"XLA_FLAGS": xla_flags.YNN_OFF},
            "thp_malloc": {"XLA_FLAGS": "",
                           "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}}
WORKLOADS = ("SASRec", "BERT4Rec", "BERT4Rec-Beauty", "GMF", "MLP-3",
             "NeuMF")
BEAUTY_ITEMS, BEAUTY_USERS = 54542, 40226


def beauty_runner(steps: int = 4):
  """(run, sequences per call): BERT4Rec at its Beauty training shape
  (experiments/configs/bert4rec_beauty.py: 54,542 items, L 50, d 64, 2
  heads, rho 0.6, batch 256 users packed into rows as
  sequential.make_epoch_batches packs them) on random items, train
  sequence lengths drawn 1-12 (Beauty's mean is 6.8)."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  from experiments.configs import bert4rec_beauty
  from jaxrec import parallel
  from jaxrec.data import sequences
  from jaxrec.train import sequential
  from jaxrec.train.step import TrainState
  config = bert4rec_beauty.get_config()
  rng = np.random.default_rng(0)
  users = np.arange(1, steps * 256 + 1)
  lengths = np.r_[0, rng.integers(1, 13, users.size)]
  width = config.model.max_len
  table = np.zeros((users.size + 1, width), np.int32)
  for_real = np.arange(width)[None, :] >= width - lengths[:, None]
  table[for_real] = rng.integers(1, BEAUTY_ITEMS + 1, for_real.sum())
  rows = -(-sequences.rows_needed(lengths, users, width) * 102 // 100 // steps)
  packing = sequences.packed_epoch(users, lengths, width, steps, rows, rng)
  budget = sequential.mask_budget(lengths, users, width, steps, rows, config)
  model = sequential.build_model(config.model, BEAUTY_ITEMS)
  batches = sequences.masked_item_batches(
      table, packing, rng, mask_prob=config.train.mask_prob,
      mask_id=model.mask_id, mask_last_share=config.train.mask_last_share,
      budget=budget)
  params = model.init(jax.random.key(0), jnp.ones((1, width), jnp.int32))[
      "params"]
  state = TrainState.create(apply_fn=model.apply, params=params,
                            tx=sequential.build_optimizer(
                                ml_collections.ConfigDict(
                                    config.optim.to_dict()), 1000))
  launcher = parallel.make_launcher("single", sequential.LOSSES["masked"], 256)
  box = {"s": launcher.put_state(state)}
  placed = launcher.put_batches(batches)

  def run():
    box["s"], m = launcher.run(box["s"], placed, jax.random.key(0))
    jax.block_until_ready(m)

  run()  # compiles
  return run, steps * 256


def child(repeats: int) -> dict[str, float]:
  """{workload: examples (NCF) or sequences (seq) per second}."""
  import bench_ncf
  import seq_steps
  out = {}
  for name in WORKLOADS:
    if name == "BERT4Rec-Beauty":
      run, work = beauty_runner()
    elif name in seq_steps.SPECS:
      run, work, _ = seq_steps.jax_runner(
          name, seq_steps.SPECS[name]["batch"], 4)
    else:
      run, work = bench_ncf.jax_runner(name, 64, 256, 256)
    out[name] = work / timing.median_seconds(run, repeats, warmup=0)
  return out


def _thp_mode() -> str:
  """The kernel's transparent-huge-page mode, e.g. 'madvise'."""
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      return f.read().split("[")[1].split("]")[0]
  except (OSError, IndexError):
    return "unknown"


def run_child(setting: str, repeats: int) -> dict[str, float]:
  env = dict(os.environ, **SETTINGS[setting], JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), "--child",
       f"--repeats={repeats}"], env=env, capture_output=True, text=True,
      check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--child", action="store_true")
  args = parser.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  if args.child:
    print(json.dumps(child(args.repeats)))
    return
  runs = {s: [] for s in SETTINGS}
  for r in range(args.rounds):
    for setting in SETTINGS:
      runs[setting].append(run_child(setting, args.repeats))
      print(r, setting, runs[setting][-1], flush=True)
  rows, rounds = [], []
  for name in WORKLOADS:
    med = {s: float(np.median([x[name] for x in runs[s]])) for s in SETTINGS}
    rows.append({"model": name, "variant": "train-step",
                 "protocol": "seqs/s" if name.startswith(("SASRec", "BERT4Rec"))
                 else "examples/s",
                 "metrics": {k: {"mean": v, "std": 0.0} for k, v in {
                     **med, **{f"{s}_ratio": med[s] / med["xla_defaults"]
                               for s in SETTINGS if s != "xla_defaults"}
                 }.items()}})
    rounds.append(f"{name}: " + "; ".join(
        f"{s} " + " / ".join(f"{x[name]:.0f}" for x in runs[s])
        for s in SETTINGS))
  notes = (f"Settings: xla_defaults = XLA_FLAGS empty (what jaxrec runs "
           f"with); ynn_off = XLA_FLAGS='{SETTINGS['ynn_off']['XLA_FLAGS']}' "
           "(jaxrec.xla_flags.YNN_OFF); thp_malloc = XLA's defaults with "
           f"GLIBC_TUNABLES='{SETTINGS['thp_malloc']['GLIBC_TUNABLES']}' "
           "(glibc >= 2.35 then madvises its mmapped chunks for "
           "transparent huge pages; the kernel's THP mode here: "
           f"{_thp_mode()}). Each setting in a child "
           f"process, alternating, {args.rounds} rounds; cells are medians "
           "over rounds of each child's median over repeats after "
           "compilation. Shapes and steps as in scripts/bench_seq.py (4 "
           "steps per dispatch), BERT4Rec-Beauty at the training shape of "
           "experiments/configs/bert4rec_beauty.py (beauty_runner), and scripts/bench_ncf.py (64 factors, batch "
           "256, 256 steps per dispatch). <setting>_ratio = that setting / "
           "xla_defaults. Per round: " + ". ".join(rounds) + ".")
  paths = results.write("bench_xla_flags", rows,
                        results.command_line(), args.out, notes)
  print("\n".join(map(str, paths)))


if __name__ == "__main__":
  main()
