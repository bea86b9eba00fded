"""Core benchmarks on MovieLens-1M: epoch time, full-ranking evaluation,
launcher throughput.  Writes results/bench_core.{md,json}.

  JAXREC_DATA_DIR=../shared/data python scripts/bench_core.py

Each part runs in its own process (device count and peak memory are
per-process).  Times are medians over repeats after a warm-up that
includes compilation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np

REPEATS = 3


def _median(fn, repeats=REPEATS):
  from jaxrec import timing
  times = timing.seconds(fn, repeats)
  return float(np.median(times)), times


def _state(n_users, n_items, dim=64):
  import jax
  import optax
  from jaxrec.models.mf import MF
  from jaxrec.train import setup
  model = MF(n_users=n_users, n_items=n_items, dim=dim)
  return model, setup.create_state(model, optax.adam(1e-3), jax.random.key(0))


def part_epoch(batch_size: int, steps_per_call: int) -> dict:
  """One epoch of MF-BCE: all ratings + 4 negatives each."""
  import jax
  from jaxrec import parallel
  from jaxrec.data import datasets, negatives
  from jaxrec.train import tasks
  data = datasets.load("ml-1m")
  pos = negatives.PositiveSets.build(data.users, data.items, data.n_users,
                                     data.n_items)
  sampler = tasks.NegativeSampler(pos)
  _, state = _state(data.n_users, data.n_items)
  launcher = parallel.make_launcher("single", tasks.pointwise_loss,
                                    batch_size)
  box = {"state": launcher.put_state(state), "epoch": 0}

  def build():
    box["epoch"] += 1
    return tasks.pointwise_epoch(data, sampler, 4, batch_size,
                                 negatives.epoch_rng(0, box["epoch"]))

  def train(batches):
    n = batches["user"].shape[0]
    key = jax.random.key(1)
    for lo in range(0, n, steps_per_call):
      chunk = {k: v[lo:lo + steps_per_call] for k, v in batches.items()}
      box["state"], m = launcher.run(box["state"],
                                     launcher.put_batches(chunk), key)
    jax.block_until_ready(box["state"])

  fixed = build()
  t_build, _ = _median(build)
  t_train, _ = _median(lambda: train(fixed))
  examples = fixed["user"].size
  return {"batch_size": batch_size, "steps_per_call": steps_per_call,
          "examples": int(examples), "build_s": t_build, "train_s": t_train,
          "epoch_s": t_build + t_train, "examples_per_s": examples / t_train}


def part_eval(chunk_size: int) -> dict:
  """Full ranking of all 6,040 users over all 3,706 items (each user's own
  ratings masked except one target)."""
  import jax
  from jaxrec import evaluate
  from jaxrec.data import datasets, negatives
  from jaxrec.train import setup
  data = datasets.load("ml-1m")
  model, state = _state(data.n_users, data.n_items)
  users = np.arange(1, data.n_users + 1, dtype=np.int32)
  pos = negatives.PositiveSets.build(data.users, data.items, data.n_users,
                                     data.n_items)
  indptr = np.concatenate([[0], np.cumsum(pos.counts()[users])])
  excl = pos.rows_of(users)[1]
  targets = excl[indptr[:-1]]  # first positive of each user as the target
  fn = jax.tree_util.Partial(setup.score_fn(model), state.params)
  run = lambda: evaluate.full_ranking(fn, users, targets, indptr, excl,
                                      data.n_items, chunk_size=chunk_size)
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  t, _ = _median(run)
  rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return {"chunk_size": chunk_size, "users": int(users.size),
          "items": data.n_items, "seconds": t,
          "users_per_s": users.size / t,
          "peak_rss_mib": rss1 / 1024, "rss_growth_mib": (rss1 - rss0) / 1024}


def part_launchers(kind: str, batch_size: int) -> dict:
  """Steady-state MF-BCE throughput of one launcher on synthetic batches."""
  import jax
  from jaxrec import parallel
  from jaxrec.train import tasks
  _, state = _state(6040, 3706)
  launcher = parallel.make_launcher(kind, tasks.pointwise_loss, batch_size)
  rng = np.random.default_rng(0)
  steps = 64
  batches = {"user": rng.integers(1, 6041, (steps, batch_size), np.int32),
             "item": rng.integers(1, 3707, (steps, batch_size), np.int32),
             "label": rng.integers(0, 2, (steps, batch_size)).astype(
                 np.float32)}
  box = {"state": launcher.put_state(state)}
  placed = launcher.put_batches(batches)

  def run():
    box["state"], m = launcher.run(box["state"], placed, jax.random.key(0))
    jax.block_until_ready(m)

  t, _ = _median(run)
  return {"launcher": kind, "devices": launcher.n_devices,
          "batch_size": batch_size,
          "examples_per_s": steps * batch_size / t}


def _child(args: list[str], devices: int = 1) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = subprocess.run([sys.executable, __file__, "--child", *args],
                       env=env, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _rows(epoch, evals, launch) -> list[dict]:
  row = lambda variant, protocol, metrics: {
      "model": "MF", "variant": variant, "dataset": "ml-1m",
      "protocol": protocol,
      "metrics": {k: {"mean": v, "std": 0.0} for k, v in metrics.items()}}
  rows = [row(f"batch={e['batch_size']},steps_per_call={e['steps_per_call']}",
              "train-epoch", {k: e[k] for k in (
                  "epoch_s", "build_s", "train_s", "examples_per_s")})
          for e in epoch]
  rows += [row(f"chunk={e['chunk_size']}", "full-ranking-eval",
               {k: e[k] for k in ("seconds", "users_per_s", "peak_rss_mib",
                                  "rss_growth_mib")}) for e in evals]
  rows += [row(f"{e['launcher']},devices={e['devices']},batch="
               f"{e['batch_size']}", "launcher",
               {"examples_per_s": e["examples_per_s"]}) for e in launch]
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--child", nargs="*")
  parser.add_argument("--out", default="results")
  args = parser.parse_args()
  if args.child is not None:
    part, *rest = args.child
    fn = {"epoch": lambda: part_epoch(int(rest[0]), int(rest[1])),
          "eval": lambda: part_eval(int(rest[0])),
          "launch": lambda: part_launchers(rest[0], int(rest[1]))}[part]
    print(json.dumps(fn()))
    return
  epoch = [_child(["epoch", str(b), str(s)])
           for b, s in ((256, 64), (256, 1024), (4096, 64))]
  evals = [_child(["eval", str(c)]) for c in (256, 1024, 6040)]
  launch = [_child(["launch", k, "4096"], d)
            for d in (1, 8) for k in ("single", "pmap", "mesh")
            if not (k == "single" and d == 8)]
  sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
  from jaxrec import results
  notes = ("MF dim 64, Adam. Epoch = all 1,000,209 ratings + 4 uniform "
           "negatives each (5,001,045 examples; the last partial batch "
           "dropped); build = negative sampling + shuffling on the host, "
           "train = device steps. Eval = full ranking of all 6,040 users over "
           "all 3,706 items; peak RSS is the whole process's; rss_growth is "
           "what evaluation added beyond loading and compiling. Launchers: "
           "64 steps per dispatch, forced CPU devices share the same 2 cores. "
           f"Medians of {REPEATS} repeats after one warm-up.")
  paths = results.write("bench_core", _rows(epoch, evals, launch),
                        results.command_line(), args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
