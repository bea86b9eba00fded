"""NCF training throughput: jaxrec (JAX) against plain PyTorch, same CPU.

  pip install -e '.[bench]'   # torch==2.13.0, CPU build
  JAXREC_DATA_DIR=../shared/data python scripts/bench_ncf.py

For GMF, MLP-3 and NeuMF at 64 predictive factors on MovieLens-1M shapes
(6,040 users, 3,706 items), batch 256 (the paper's) and 4096, and at 8
factors with batch 256 (the dispatch-bound end): examples/s of
the training step (BCE, Adam 1e-3) after warm-up, both frameworks in this
one process taking turns over rounds (timing.interleaved_rates); the wall
time of one real NCF epoch (988k training positives + 4 negatives each);
and achieved FLOP/s against the machine's measured float32 matmul peak.
JAX runs four times: with optax's Adam everywhere; with the same Adam's
step made by jaxrec.kernels.row_adam (optim.tables='row_adam'); with that
and the towers' products by Intel MKL's sgemm as well (model.matmul='blas',
jaxrec.kernels.blas; needs pip install -e '.[mkl]'); and with that and the
whole tower in one MKL kernel call each way (model.matmul='blas_fused',
jaxrec.kernels.tower).
Writes results/bench_ncf.*.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import jax
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import parallel, results, timing, xla_flags  # noqa: E402
from jaxrec.models import ncf  # noqa: E402
from jaxrec.train import row_sparse, setup, tasks  # noqa: E402

N_USERS, N_ITEMS, LAYERS = 6040, 3706, 3


def _jax_model(name, factors, **tower):
  """The named model; `tower` (matmul=, tower_dtype=) sets up its tower
  (GMF has none)."""
  kw = dict(n_users=N_USERS, n_items=N_ITEMS, factors=factors)
  return {"GMF": lambda: ncf.GMF(**kw),
          "MLP-3": lambda: ncf.MLP(layers=LAYERS, **tower, **kw),
          "NeuMF": lambda: ncf.NeuMF(layers=LAYERS, **tower, **kw)
          }[name]()


def _batches(rng, steps, batch):
  return {"user": rng.integers(1, N_USERS + 1, (steps, batch), np.int32),
          "item": rng.integers(1, N_ITEMS + 1, (steps, batch), np.int32),
          "label": rng.integers(0, 2, (steps, batch)).astype(np.float32)}


def _placed(name, factors, batch, opt=None, tables="dense", **tower):
  """(launcher, state on its device): the 'single' launcher's BCE step of
  the named model, optax.adam(1e-3) unless `opt`; tables='row_adam' makes
  Adam's step by jaxrec.kernels.row_adam (train.row_sparse), as
  `--config.optim.tables=row_adam` does; matmul='blas' makes the tower's
  products by MKL's sgemm, as `--config.model.matmul=blas` does (and
  tower_dtype= as model.tower_dtype)."""
  model = _jax_model(name, factors, **tower)
  state = setup.create_state(model, opt or optax.adam(1e-3),
                             jax.random.key(0))
  step = (row_sparse.make_train_step(model, tasks.pointwise_loss, 1e-3)
          if tables == "row_adam" else None)
  launcher = parallel.make_launcher("single", tasks.pointwise_loss, batch,
                                    train_step=step)
  return launcher, launcher.put_state(state)


def jax_runner(name, factors, batch, steps_per_call, opt=None,
               tables="dense", **tower):
  """(run, examples per call): `steps_per_call` jitted steps per dispatch,
  compiled; `opt`, `tables` and `tower` as in _placed."""
  launcher, state = _placed(name, factors, batch, opt, tables, **tower)
  box = {"s": state}
  placed = launcher.put_batches(_batches(np.random.default_rng(0),
                                         steps_per_call, batch))

  def run():
    box["s"], m = launcher.run(box["s"], placed, jax.random.key(0))
    jax.block_until_ready(m)

  run()  # compiles
  return run, steps_per_call * batch


def torch_runner(name, factors, batch, steps, autocast=False):
  """(run, examples per call): eager PyTorch, warmed up; `autocast` runs
  the forward pass under torch.autocast('cpu', bfloat16)."""
  import torch
  from torch import nn
  torch.manual_seed(0)
  dim = ncf.mlp_embed_dim(factors, LAYERS)

  def tower():
    widths = (2 * dim,) + ncf.tower_widths(factors, LAYERS)
    return nn.Sequential(*[m for a, b in zip(widths[:-1], widths[1:])
                           for m in (nn.Linear(a, b), nn.ReLU())])

  class Model(nn.Module):
    def __init__(self):
      super().__init__()
      if name in ("GMF", "NeuMF"):
        self.gu = nn.Embedding(N_USERS + 1, factors)
        self.gi = nn.Embedding(N_ITEMS + 1, factors)
      if name in ("MLP-3", "NeuMF"):
        self.mu = nn.Embedding(N_USERS + 1, dim)
        self.mi = nn.Embedding(N_ITEMS + 1, dim)
        self.tower = tower()
      width = {"GMF": factors, "MLP-3": factors, "NeuMF": 2 * factors}[name]
      self.out = nn.Linear(width, 1)
      for p in self.parameters():
        if p.dim() == 2 and p.shape[0] > 1000:
          nn.init.normal_(p, std=0.01)

    def forward(self, u, i):
      parts = []
      if name in ("GMF", "NeuMF"):
        parts.append(self.gu(u) * self.gi(i))
      if name in ("MLP-3", "NeuMF"):
        parts.append(self.tower(torch.cat([self.mu(u), self.mi(i)], -1)))
      return self.out(torch.cat(parts, -1)).squeeze(-1)

  model = Model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = nn.BCEWithLogitsLoss()
  data = _batches(np.random.default_rng(0), steps, batch)
  tensors = [(torch.from_numpy(data["user"][s]).long(),
              torch.from_numpy(data["item"][s]).long(),
              torch.from_numpy(data["label"][s])) for s in range(steps)]

  cast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast
          else contextlib.nullcontext)   # float32: the step as it was

  def run():
    for u, i, y in tensors:
      opt.zero_grad(set_to_none=True)
      with cast():
        logits = model(u, i)
      loss = loss_fn(logits.float() if autocast else logits, y)
      loss.backward()
      opt.step()

  run()  # warm-up
  return run, steps * batch


def flops_per_example(name, factors) -> float:
  """Dense-layer FLOPs of forward + backward (3x forward), per example."""
  dim = ncf.mlp_embed_dim(factors, LAYERS)
  widths = (2 * dim,) + ncf.tower_widths(factors, LAYERS)
  tower = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  macs = {"GMF": 2 * factors, "MLP-3": tower + factors,
          "NeuMF": tower + 3 * factors}[name]
  return 3 * 2 * macs


def ncf_epoch_seconds(name, tables="dense", matmul="xla") -> float:
  """Wall time of one real epoch on the NCF split at batch 256."""
  from jaxrec.data import ncf as ncf_data, negatives
  split, _ = ncf_data.load_split(os.environ.get("JAXREC_DATA_DIR",
                                                "../shared/data"))
  train = split.train
  sampler = tasks.NegativeSampler(negatives.PositiveSets.build(
      train.users, train.items, train.n_users, train.n_items))
  launcher, state = _placed(name, 64, 256, tables=tables, matmul=matmul)
  box = {"s": state, "epoch": 0}

  def epoch():
    batches = tasks.pointwise_epoch(train, sampler, 4, 256,
                                    negatives.epoch_rng(0, box["epoch"]))
    box["epoch"] += 1
    for lo in range(0, batches["user"].shape[0], 256):
      chunk = {k: v[lo:lo + 256] for k, v in batches.items()}
      box["s"], m = launcher.run(box["s"], launcher.put_batches(chunk),
                                 jax.random.key(0))
    jax.block_until_ready(box["s"])

  return timing.median_seconds(epoch, repeats=1)


# The JAX contenders compared with PyTorch, each with its metrics' prefix
# ('' for plain jax): examples_per_s, ratio_vs_torch, flops_fraction_of_peak.
CONTENDERS = {"jax": "", "jax_row_adam": "row_adam_", "jax_blas": "blas_",
              "jax_fused": "fused_"}


def _ratios(per_round, name):
  """Each round's rate of contender `name` over PyTorch's."""
  return np.divide(per_round[name], per_round["torch"])


def round_ratios(per_round) -> str:
  """Each round's contender/torch ratios, 'a/b/c/dx' in CONTENDERS order."""
  columns = zip(*(_ratios(per_round, k) for k in CONTENDERS))
  return ", ".join("/".join(f"{r:.2f}x" for r in c) for c in columns)


def step_row(name, factors, batch, per_round, peak) -> dict:
  """The train-step row: every contender's median examples/s, its median
  paired ratio to PyTorch, and its dense-layer FLOP/s over `peak`."""
  rate = {k: float(np.median(v)) for k, v in per_round.items()}
  flops = flops_per_example(name, factors)
  metrics = {f"{k}_examples_per_s": rate[k]
             for k in (*CONTENDERS, "jax_1step", "torch")}
  metrics.update({f"{p}ratio_vs_torch": float(np.median(_ratios(per_round, k)))
                  for k, p in CONTENDERS.items()})
  metrics.update({f"{p}flops_fraction_of_peak": rate[k] * flops / peak
                  for k, p in CONTENDERS.items()})
  return {"model": name, "variant": f"factors={factors},batch={batch}",
          "dataset": "ml-1m shapes", "protocol": "train-step",
          "metrics": {k: {"mean": v, "std": 0.0} for k, v in metrics.items()}}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="results")
  parser.add_argument("--rounds", type=int, default=3,
                      help="rounds in which the contenders take turns")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed calls per contender per round (median)")
  args = parser.parse_args()
  round_notes = []
  import torch
  load0 = os.getloadavg()[0]
  peak = timing.matmul_peak_flops()
  rows = []
  for factors, batch, steps in ((64, 256, 256), (64, 4096, 32),
                                (8, 256, 256)):
    for name in ("GMF", "MLP-3", "NeuMF"):
      per_round = timing.interleaved_rates({
          "jax": jax_runner(name, factors, batch, steps),
          "jax_row_adam": jax_runner(name, factors, batch, steps,
                                     tables="row_adam"),
          "jax_blas": jax_runner(name, factors, batch, steps,
                                 tables="row_adam", matmul="blas"),
          "jax_fused": jax_runner(name, factors, batch, steps,
                                  tables="row_adam", matmul="blas_fused"),
          "jax_1step": jax_runner(name, factors, batch, 1),
          "torch": torch_runner(name, factors, batch, min(steps, 64))},
          args.rounds, args.repeats)
      rows.append(step_row(name, factors, batch, per_round, peak))
      round_notes.append(f"{name} factors={factors},batch={batch}: "
                         + round_ratios(per_round))
      print(rows[-1]["variant"], name, {k: round(v["mean"], 3)
                                        for k, v in rows[-1]["metrics"]
                                        .items()}, flush=True)
  for name in ("GMF", "MLP-3", "NeuMF"):
    rows.append({"model": name, "variant": "factors=64,batch=256",
                 "dataset": "ml-1m ncf split", "protocol": "train-epoch",
                 "metrics": {k: {"mean": ncf_epoch_seconds(name, t, m),
                                 "std": 0.0} for k, t, m in (
                     ("epoch_s", "dense", "xla"),
                     ("row_adam_epoch_s", "row_adam", "xla"),
                     ("blas_epoch_s", "row_adam", "blas"),
                     ("fused_epoch_s", "row_adam", "blas_fused"))}})
  notes = (f"Adam 1e-3, BCE. jax = {256} (batch 256) or 32 (batch 4096) "
           "steps per dispatch via lax.scan; jax_row_adam = the same, "
           "Adam's step made by jaxrec.kernels.row_adam "
           "(optim.tables='row_adam': one pass per table, no gradient "
           "table, the dense layers in the same call); jax_blas = jax_row_adam with the towers' products by "
           "MKL's sgemm (model.matmul='blas'; GMF has no tower, so its "
           "jax_blas is jax_row_adam again); jax_fused = jax_row_adam with "
           "each tower's forward and backward pass one MKL kernel call "
           "(model.matmul='blas_fused'; towers under "
           "jaxrec.kernels.tower.MIN_FLOPS, as at 8 factors, run on lax); "
           "jax_1step = one jitted step per "
           "dispatch; torch = eager PyTorch "
           f"{torch.__version__}, {torch.get_num_threads()} threads, dense "
           "nn.Embedding and torch.optim.Adam. After warm-up the six "
           f"contenders take turns in {args.rounds} rounds of {args.repeats} "
           "timed calls (timing.interleaved_rates); a figure is the median "
           "over rounds of each round's median; ratio_vs_torch "
           "(row_adam_, blas_, fused_ratio_vs_torch) is the median over "
           "rounds of the round's jax (jax_row_adam, jax_blas, jax_fused)/"
           "torch ratio. Each round's jax/torch, jax_row_adam/torch, "
           "jax_blas/torch and jax_fused/torch "
           f"ratios: {'; '.join(round_notes)}. "
           f"Measured float32 matmul peak: {peak / 1e9:.0f} GFLOP/s; "
           "flops_fraction_of_peak counts dense-layer FLOPs only (forward + "
           "backward), so embedding-bound models sit far below the peak. "
           "Epoch = 988,129 positives + 4 negatives each, batch 256, "
           f"including host-side negative sampling. {xla_flags.describe()}"
           f" Load average: {load0:.2f} (1 min) at the start, "
           f"{os.getloadavg()[0]:.2f} at the end.")
  paths = results.write("bench_ncf", rows, results.command_line(),
                        args.out, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
