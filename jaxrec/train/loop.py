"""`train_and_evaluate(config, workdir)`: the whole run, resumable.

Resume order: the newest good checkpoint in `<workdir>/checkpoints`, else
scratch.  The host never waits on the device between dispatches: metrics
stay on device until a log point, an evaluation or a checkpoint.
Model selection and early stopping read validation metrics only; the test
set is evaluated once, on the best-by-validation state.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from jaxrec import checkpoint, evaluate, parallel
from jaxrec.data import datasets, evalsets, interactions, negatives, splits
from jaxrec.models.popularity import popularity_score_fn
from jaxrec.train import records, setup, tasks


def _prepare_data(config, workdir: Path):
  split, test_negatives = datasets.load_split(config.data,
                                              config.data.split_seed)
  if split.protocol == "ratio":
    sets, protocol = evalsets.ratio_sets(split, config.data.test_ratio)
    digest = "none (no sampled negatives)"
  else:
    neg_dir = config.eval.negatives_dir or workdir / "eval_negatives"
    sets, protocol, digest = evalsets.leave_one_out_sets(
        split, n_negatives=config.eval.n_negatives,
        sampling=config.eval.negative_sampling,
        seed=config.data.split_seed, cache_dir=neg_dir,
        test_negatives=test_negatives)
  logging.info("%s %s: %d train / %d valid / %d test; %d users kept in train "
               "only (fewer than 3 interactions); negatives sha256 %s",
               split.train.name, split.protocol, len(split.train),
               len(split.valid), len(split.test), split.n_dropped_users,
               digest[:12])
  return split, sets, protocol, digest


def _evaluate(score, params, sets, roles, protocol, config, full=True):
  """{role: {'full/HR@10': ..., 'sampled-.../HR@10': ...}} and per-user.

  `full=False` skips full ranking (for per-epoch validation of models whose
  full ranking is costly, e.g. NeuMF scoring every user-item pair).
  """
  fn = jax.tree_util.Partial(score, params)
  ks = tuple(config.eval.ks)
  summary, per_user = {}, {}
  for role in roles:
    s = sets[role]
    if isinstance(s, evalsets.RelevanceSet):
      results = [(protocol, evaluate.full_ranking_multi(
          fn, s.users, s.relevant_indptr, s.relevant_items,
          s.exclude_indptr, s.exclude_items, s.n_items,
          chunk_size=config.eval.chunk_size, ks=ks))]
      full = False
    else:
      results = [(protocol, evaluate.sampled_ranking(fn, s.users,
                                                     s.candidates(), ks=ks))]
    if full:
      results.insert(0, ("full", evaluate.full_ranking(
          fn, s.users, s.targets, s.exclude_indptr, s.exclude_items,
          s.n_items, chunk_size=config.eval.chunk_size, ks=ks)))
    summary[role], per_user[role] = {}, {}
    for label, values in results:
      for name, v in evaluate.summarize(values).items():
        summary[role][f"{label}/{name}"] = v
      for name, v in values.items():
        per_user[role][f"{label}/{name}"] = v
  return summary, per_user


def _finish(workdir: Path, summary, per_user, extra: dict) -> dict:
  result = {**extra, **{role: m for role, m in summary.items()}}
  records.write_json(workdir / "results.json", result)
  np.savez(workdir / "per_user.npz", **{
      f"{role}/{k}": v for role, d in per_user.items() for k, v in d.items()})
  return result


def train_and_evaluate(config, workdir: str | Path) -> dict:
  """Trains, selects on validation, evaluates test; returns the results.

  Writes config.json, manifest.json, metrics.jsonl, checkpoints/,
  results.json and per_user.npz (per-user metrics for significance tests)
  into `workdir`.
  """
  workdir = Path(workdir)
  records.write_run_header(workdir, config)
  split, sets, protocol, digest = _prepare_data(config, workdir)
  info = {"protocol": protocol, "negatives_sha256": digest,
          "dataset": split.train.name, "split": split.protocol}

  refit = bool(config.train.get("refit")) and "valid" in sets
  if config.model.name == "popularity":
    counts = (_merged(split) if refit else split).train.item_counts()
    score = lambda counts, u, c: popularity_score_fn(counts)(u, c)
    summary, per_user = _evaluate(score, counts, sets, tuple(sets), protocol,
                                  config)
    return _finish(workdir, summary, per_user, {**info, "train_seconds": 0.0})

  trainer = _Trainer(config, workdir, split, sets, protocol)
  train_seconds = trainer.run()
  if trainer.halted:
    return {}
  params = trainer.best_params()
  roles = ("valid",) if refit else tuple(sets)  # a refit model reads test
  summary, per_user = _evaluate(trainer.score, params, sets, roles, protocol,
                                config)
  extra = {"epochs": trainer.epoch, "best_step": trainer.best_step}
  if refit:
    # Retrain on train + validation for the selected number of epochs; test
    # is read once, from the refit model.  Validation figures stay phase 1's.
    cfg = config.copy_and_resolve_references()
    cfg.train.epochs, cfg.train.refit = trainer.best_epoch, False
    second = _Trainer(cfg, workdir / "refit", _merged(split),
                      {"test": sets["test"]}, protocol)
    train_seconds += second.run()
    test, test_per_user = _evaluate(second.score, second.best_params(), sets,
                                    ("test",), protocol, config)
    summary.update(test)
    per_user.update(test_per_user)
    extra["refit_epochs"] = trainer.best_epoch
  for role in summary:
    logging.info("best %s: %s", role, _fmt(summary[role]))
  return _finish(workdir, summary, per_user, {
      **info, "train_seconds": train_seconds, **extra})


def _merged(split: splits.Split) -> splits.Split:
  """The split with validation folded into train (for a refit)."""
  return dataclasses.replace(
      split, train=interactions.concat(split.train, split.valid),
      valid=split.valid.select(np.zeros(len(split.valid), bool)))


def _config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
  """'key: old -> new' for every leaf that differs between two configs."""
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _config_changes(a, b, f"{prefix}{key}.")
    elif a != b and not (isinstance(a, list) and tuple(a) == b):
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def _crossed(before: int, after: int, every: int) -> bool:
  """Did the step count pass a multiple of `every` (0 = never)?"""
  return bool(every) and before // every != after // every


def _fmt(metrics: dict) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


class _Trainer:
  """The epoch loop with its resumable position and early-stopping state."""

  def __init__(self, config, workdir, split, sets, protocol):
    self.config, self.sets, self.protocol = config, sets, protocol
    self.train = split.train
    tc = config.train
    if not config.eval.valid_full and config.eval.select.startswith("full/"):
      raise ValueError(f"eval.select={config.eval.select!r} needs full "
                       "ranking, but eval.valid_full is False")
    model = setup.build_model(config.model, self.train.n_users,
                              self.train.n_items)
    self.score = setup.score_fn(model)
    self.task = tasks.TASKS[tc.loss]
    positives = negatives.PositiveSets.build(
        self.train.users, self.train.items, self.train.n_users,
        self.train.n_items)
    weights = (self.train.item_counts().astype(np.float64)
               if tc.negative_sampling == "popularity" else None)
    self.sampler = tasks.NegativeSampler(positives, weights)
    root = jax.random.key(config.seed)
    init_key, self.step_key = jax.random.split(root)
    self.template = setup.create_state(
        model, setup.build_optimizer(config.optim), init_key)
    loss = self.task.loss
    if tc.get("l2", 0.0):
      loss = functools.partial(loss, l2=tc.l2)
    self.launcher = parallel.make_launcher(tc.launcher, loss, tc.batch_size)
    self.ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
    self.log = records.MetricsLog(workdir)
    self.halted = False
    self._restore()

  def _restore(self):
    restored = self.ckpt.restore_latest_good(self.template)
    meta = {"epoch": 0, "step_in_epoch": 0, "best": None, "best_step": None,
            "best_epoch": None, "bad_evals": 0, "train_seconds": 0.0}
    state = self.template
    pretrained = self.config.model.get("pretrained")
    if restored is None and pretrained and pretrained.gmf:
      state = setup.init_from_pretrained(state, pretrained,
                                         self.train.n_users,
                                         self.train.n_items)
      logging.info("NeuMF initialised from %s and %s", pretrained.gmf,
                   pretrained.mlp)
    if restored is not None:
      state, saved = restored
      meta.update(saved["position"])
      changed = _config_changes(saved.get("config", {}), self.config.to_dict())
      if changed:
        logging.warning("resuming with a changed config: %s",
                        "; ".join(changed))
      logging.info("resuming from step %d (epoch %d)", int(state.step),
                   meta["epoch"])
    self.log.truncate_after(int(state.step))
    self.state = self.launcher.put_state(state)
    self.epoch, self.step_in_epoch = meta["epoch"], meta["step_in_epoch"]
    self.best, self.best_step = meta["best"], meta["best_step"]
    self.best_epoch = meta["best_epoch"]
    self.bad_evals, self.seconds = meta["bad_evals"], meta["train_seconds"]

  def _position(self) -> dict:
    return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "best": self.best, "best_step": self.best_step,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals, "train_seconds": self.seconds}

  def _save(self, metric=None):
    state = self.launcher.get_state(self.state)
    self.ckpt.save(int(state.step), state,
                   {"position": self._position(),
                    "config": self.config.to_dict()}, metric=metric)

  def best_params(self):
    self.ckpt.wait()
    if self.ckpt.steps("best"):
      state, _ = self.ckpt.restore(self.template, which="best")
      return state.params
    return self.launcher.get_state(self.state).params

  def run(self) -> float:
    """Trains to the end (or early stop); returns training seconds."""
    try:
      return self._run()
    finally:
      self.ckpt.wait()  # an in-flight save must land even on an error

  def _run(self) -> float:
    tc = self.config.train
    pending, t_log = [], time.perf_counter()
    step = int(self.launcher.get_state(self.state).step)
    while self.epoch < tc.epochs and not self._stopped_early():
      rng = negatives.epoch_rng(self.config.seed, self.epoch)
      batches = self.task.epoch(self.train, self.sampler, tc.negatives,
                                tc.batch_size, rng)
      n_steps = next(iter(batches.values())).shape[0]
      while self.step_in_epoch < n_steps:
        lo = self.step_in_epoch
        hi = min(lo + tc.steps_per_call, n_steps)
        chunk = {k: v[lo:hi] for k, v in batches.items()}
        # 'disallow' proves the hot loop makes no hidden host transfers.
        with jax.transfer_guard(tc.transfer_guard):
          self.state, metrics = self.launcher.run(
              self.state, self.launcher.put_batches(chunk), self.step_key)
        pending.append(metrics)
        prev, step = step, step + hi - lo
        self.step_in_epoch = hi
        if _crossed(prev, step, tc.log_every_steps):
          t_log = self._log_train(pending, step, n_steps, t_log)
          pending = []
        if tc.halt_after_steps and step >= tc.halt_after_steps:
          self.halted = True  # as if killed here: nothing more is saved
          self.ckpt.wait()
          return self.seconds
        if (_crossed(prev, step, tc.checkpoint_every_steps)
            and hi < n_steps):  # the end of an epoch saves anyway
          t_log = self._log_train(pending, step, n_steps, t_log)
          pending = []
          self._save()
      self._log_train(pending, step, n_steps, t_log)
      pending = []
      self.epoch, self.step_in_epoch = self.epoch + 1, 0
      stop = self._end_of_epoch(step)
      t_log = time.perf_counter()  # evaluation time is not training time
      if stop:
        break
    self.ckpt.wait()
    return self.seconds

  def _stopped_early(self) -> bool:
    """Early stopping already fired (e.g. before a restart)."""
    patience = self.config.eval.patience
    return bool(patience) and self.bad_evals >= patience

  def _log_train(self, pending, step, n_steps, t_log) -> float:
    """Fetches pending metrics (the one host sync), checks, logs."""
    if not pending:
      return time.perf_counter()
    losses = np.concatenate([np.asarray(m["loss"]) for m in jax.device_get(
        pending)])
    now = time.perf_counter()  # after the fetch: dispatch is asynchronous
    if not np.all(np.isfinite(losses)):
      first = step - losses.size + int(np.argmin(np.isfinite(losses))) + 1
      last = self.ckpt.steps()
      raise FloatingPointError(
          f"training loss is {losses[first - step + losses.size - 1]} at step "
          f"{first} (epoch {self.epoch + 1}); nothing was saved after it. "
          "Last good checkpoint: "
          f"{self.ckpt.step_dir(last[-1]) if last else 'none'}")
    elapsed = now - t_log
    self.seconds += elapsed
    examples = losses.size * self.config.train.batch_size
    rate = examples / max(elapsed, 1e-9)
    left = (self.config.train.epochs - self.epoch) * n_steps - self.step_in_epoch
    eta = left * self.config.train.batch_size / max(rate, 1e-9)
    logging.info("epoch %d step %d/%d loss %.4f | %.0f ex/s | eta %.0fs",
                 self.epoch + 1, self.step_in_epoch, n_steps,
                 float(losses.mean()), rate, eta)
    self.log.write({"step": step, "epoch": self.epoch, "kind": "train",
                    "loss": float(losses.mean()), "examples_per_s": rate})
    return now

  def _end_of_epoch(self, step: int) -> bool:
    """Validates, checkpoints; True when early stopping says stop."""
    ec = self.config.eval
    last = self.epoch == self.config.train.epochs
    if "valid" not in self.sets or (self.epoch % ec.every_epochs
                                    and not last):
      self._save()  # no validation set: the last epoch is the result
      return False
    params = self.launcher.get_state(self.state).params
    summary, _ = _evaluate(self.score, params, self.sets, ("valid",),
                           self.protocol, self.config, full=ec.valid_full)
    value = summary["valid"][ec.select]
    improved = self.best is None or value > self.best
    if improved:
      self.best, self.best_step, self.bad_evals = value, step, 0
      self.best_epoch = self.epoch
    else:
      self.bad_evals += 1
    logging.info("epoch %d valid %s", self.epoch, _fmt(summary["valid"]))
    self.log.write({"step": step, "epoch": self.epoch, "kind": "valid",
                    **summary["valid"]})
    self._save(metric=value)
    return self._stopped_early()
