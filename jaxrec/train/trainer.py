"""The epoch loop every model family shares: `fit(config, workdir, job)`.

A family describes its run as a `Job` (fresh state, loss, epoch batches,
evaluation); the loop supplies the rest: S steps per dispatch, the launchers
of `jaxrec.parallel`, checkpoints (last and best), resume, early stopping on
validation, NaN checks, progress logs, `metrics.jsonl`, `results.json` and
`per_user.npz`.

Resume order: the newest good checkpoint in `<workdir>/checkpoints`, else
`job.init(template)`, else scratch.  The host never waits on the device
between dispatches: metrics stay on device until a log point, an evaluation
or a checkpoint.  Model selection and early stopping read validation metrics
only; the test set is evaluated once, on the best-by-validation state
(`eval.trace_test` also logs it each epoch, as a leaky diagnostic that
nothing reads).  `eval.select_role='test'` selects and stops on test
instead, as some papers' released code does: leaky by design, for
reproducing such a paper's reading, never for a result of ours.

Legend: S = steps per epoch, B = batch size.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from absl import logging

from jaxrec import checkpoint, parallel
from jaxrec.data import negatives
from jaxrec.train import records
from jaxrec.train.step import TrainState

# evaluate(params, roles, final) -> ({role: {metric: float}},
#                                    {role: {metric: per-user array}})
EvaluateFn = Callable[[Any, tuple, bool], tuple[dict, dict]]


@dataclasses.dataclass(frozen=True)
class Job:
  """What a model family hands to the shared loop.

  Attributes:
    template: the fresh TrainState (apply_fn, params, tx).
    loss_fn: `loss(params, batch, key, apply_fn) -> (mean loss, aux)`; aux
      holds scalars, logged beside the loss.
    epoch_batches: `(epoch, rng) -> {name: (S, B, ...) numpy}`; `rng` is
      `negatives.epoch_rng(config.seed, epoch)`, so an epoch is replayable.
    evaluate: scores `roles` with `params`; `final=False` is the per-epoch
      validation and may skip costly protocols.
    select: the metric that picks the best state (higher wins), read on
      validation (on test under the leaky eval.select_role='test').
    roles: evaluated once at the end; without 'valid' every epoch is saved
      and the last one is the result.
    init: applied to the template on a fresh start (pretrained weights).
    train_step: a custom `step(state, batch, key) -> (state, metrics)` for
      stateful training (e.g. a carried RNN state); 'single' launcher only.
    make_step: `make_step(axis_name) -> step`, a data-parallel custom step
      (jaxrec.train.row_sparse's); 'single' and 'pmap' launchers.
  """

  template: TrainState
  loss_fn: Callable | None
  epoch_batches: Callable[[int, np.random.Generator], dict]
  evaluate: EvaluateFn
  select: str
  roles: tuple[str, ...] = ("valid", "test")
  init: Callable[[TrainState], TrainState] | None = None
  train_step: Callable | None = None
  make_step: Callable | None = None


def fit(config, workdir: str | Path, job: Job, info: dict | None = None
        ) -> dict:
  """Trains, selects on validation, evaluates `job.roles` once.

  Returns (and writes to `workdir/results.json`) `info` plus one dict of
  metrics per role, 'train_seconds', 'epochs' (trained), 'best_epoch'
  (selected on validation; None without it) and 'best_step'; per-user
  values go to `workdir/per_user.npz`.  Returns {} when halted on purpose
  (`config.train.halt_after_steps`).
  """
  workdir = Path(workdir)
  records.write_run_header(workdir, config)
  trainer = Trainer(config, workdir, job)
  seconds = trainer.run()
  if trainer.halted:
    return {}
  summary, per_user = job.evaluate(trainer.best_params(), job.roles, True)
  for role in summary:
    logging.info("best %s: %s", role, fmt(summary[role]))
  leaky = {"selected_on": "test"} if trainer.select_role == "test" else {}
  return finish(workdir, summary, per_user, {
      **(info or {}), "train_seconds": seconds, "epochs": trainer.epoch,
      "best_epoch": trainer.best_epoch, "best_step": trainer.best_step,
      **leaky})


def fit_with_refit(config, workdir: str | Path, job: Callable[[], Job],
                   refit_job: Callable[[Any], Job], info: dict | None = None,
                   refit_config: Callable[[Any], Any] | None = None) -> dict:
  """Selects the epoch count on validation, then retrains on more data.

  Phase 1 trains `job()` (its roles include 'valid') in `workdir` and keeps
  the best-by-validation epoch count E.  Phase 2 trains `refit_job(cfg)` (a
  Job on train + validation whose roles are ('test',)) for E epochs in
  `workdir/refit`; test is read once, from it.  Validation figures stay
  phase 1's.  With `train.refit_epochs` > 0, E was chosen earlier (by
  another seed's phase 1): phase 1 is skipped and there are no validation
  figures.  `refit_config` edits phase 2's config (a copy) before it is
  recorded.  Returns what `fit` returns, plus 'refit_epochs'.
  """
  workdir = Path(workdir)
  if _select_role(config) != "valid":
    raise ValueError("train.refit picks its epoch count on validation; "
                     f"eval.select_role={_select_role(config)!r} cannot refit")
  records.write_run_header(workdir, config)
  fixed = int(config.train.get("refit_epochs") or 0)
  summary, per_user, seconds, epochs, best_step = {}, {}, 0.0, 0, None
  if fixed:
    best_epoch = fixed
  else:
    first = Trainer(config, workdir, job())
    seconds = first.run()
    if first.halted:
      return {}
    summary, per_user = first.job.evaluate(first.best_params(), ("valid",), True)
    epochs, best_step, best_epoch = (first.epoch, first.best_step,
                                     first.best_epoch)
  cfg = config.copy_and_resolve_references()
  cfg.train.epochs, cfg.train.refit = best_epoch, False
  if refit_config is not None:
    cfg = refit_config(cfg)
  records.write_run_header(workdir / "refit", cfg)
  second = Trainer(cfg, workdir / "refit", refit_job(cfg))
  seconds += second.run()
  if second.halted:
    return {}
  test, test_per_user = second.job.evaluate(second.best_params(), ("test",),
                                            True)
  summary.update(test)
  per_user.update(test_per_user)
  for role in summary:
    logging.info("best %s: %s", role, fmt(summary[role]))
  return finish(workdir, summary, per_user, {
      **(info or {}), "train_seconds": seconds,
      "epochs": epochs or best_epoch, "best_step": best_step,
      "refit_epochs": best_epoch, "best_epoch": best_epoch,
      "seconds_per_epoch": seconds / max(epochs + best_epoch, 1)})


def _select_role(config) -> str:
  """`eval.select_role`: 'valid' (the default) or 'test' (leaky)."""
  role = config.eval.get("select_role", "valid")
  if role not in ("valid", "test"):
    raise ValueError(f"eval.select_role={role!r}: expected 'valid' or 'test'")
  return role


def finish(workdir: Path, summary: dict, per_user: dict, extra: dict) -> dict:
  """Writes results.json and per_user.npz; returns the results."""
  result = {**extra, **summary}
  records.write_json(Path(workdir) / "results.json", result)
  np.savez(Path(workdir) / "per_user.npz", **{
      f"{role}/{k}": v for role, d in per_user.items() for k, v in d.items()})
  return result


def fmt(metrics: dict) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


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


class Trainer:
  """The epoch loop with its resumable position and early-stopping state."""

  def __init__(self, config, workdir: Path, job: Job):
    self.config, self.job = config, job
    self.select_role = _select_role(config)
    self.validates = self.select_role in job.roles
    if self.select_role == "test" and self.validates:
      logging.warning("eval.select_role='test': the epoch is chosen and "
                      "training stopped on the TEST set (leaky; for "
                      "reproducing a paper's reading, never a result)")
    tc = config.train
    self.step_key = jax.random.split(jax.random.key(config.seed))[1]
    self.launcher = parallel.make_launcher(
        tc.launcher, job.loss_fn, tc.batch_size, train_step=job.train_step,
        make_step=job.make_step)
    self.ckpt = checkpoint.Checkpointer(Path(workdir) / "checkpoints")
    self.log = records.MetricsLog(Path(workdir))
    self.halted = False
    self._restore()

  def _restore(self):
    restored = self.ckpt.restore_latest_good(self.job.template)
    meta = {"epoch": 0, "step_in_epoch": 0, "best": None, "best_step": None,
            "best_epoch": None, "bad_evals": 0, "train_seconds": 0.0}
    if restored is None:
      state = self.job.template
      if self.job.init is not None:
        state = self.job.init(state)
    else:
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
    """The best-by-validation parameters (the last ones without it)."""
    self.ckpt.wait()
    if self.ckpt.steps("best"):
      state, _ = self.ckpt.restore(self.job.template, which="best")
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
      batches = self.job.epoch_batches(self.epoch, rng)
      n_steps = next(iter(jax.tree.leaves(batches))).shape[0]
      while self.step_in_epoch < n_steps:
        lo = self.step_in_epoch
        hi = min(lo + tc.steps_per_call, n_steps)
        chunk = jax.tree.map(lambda v: v[lo:hi], batches)
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
    fetched = jax.device_get(pending)
    now = time.perf_counter()  # after the fetch: dispatch is asynchronous
    losses = np.concatenate([np.asarray(m["loss"]) for m in fetched])
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
    tc = self.config.train
    rate = losses.size * tc.batch_size / max(elapsed, 1e-9)
    left = (tc.epochs - self.epoch) * n_steps - self.step_in_epoch
    eta = left * tc.batch_size / max(rate, 1e-9)
    aux = {k: float(np.mean([np.mean(m[k]) for m in fetched]))
           for k in fetched[0] if k != "loss"}
    logging.info("epoch %d step %d/%d loss %.4f | %.0f ex/s | eta %.0fs",
                 self.epoch + 1, self.step_in_epoch, n_steps,
                 float(losses.mean()), rate, eta)
    self.log.write({"step": step, "epoch": self.epoch, "kind": "train",
                    "loss": float(losses.mean()), **aux,
                    "examples_per_s": rate})
    return now

  def _end_of_epoch(self, step: int) -> bool:
    """Validates, checkpoints; True when early stopping says stop."""
    ec = self.config.eval
    last = self.epoch == self.config.train.epochs
    if not self.validates or (self.epoch % ec.every_epochs and not last):
      self._save()  # no validation now: the newest state is the result
      return False
    params = self.launcher.get_state(self.state).params
    role = self.select_role
    summary, _ = self.job.evaluate(params, (role,), False)
    value = summary[role][self.job.select]
    if self.best is None or value > self.best:
      self.best, self.best_step, self.bad_evals = value, step, 0
      self.best_epoch = self.epoch
    else:
      self.bad_evals += 1
    kind = "valid" if role == "valid" else "select_on_test"
    logging.info("epoch %d %s %s", self.epoch, kind, fmt(summary[role]))
    self.log.write({"step": step, "epoch": self.epoch, "kind": kind,
                    **summary[role]})
    if ec.get("trace_test") and role == "valid" and "test" in self.job.roles:
      self._trace_test(params, step)
    self._save(metric=value)
    return self._stopped_early()

  def _trace_test(self, params, step: int):
    """`eval.trace_test`: logs this epoch's test metrics as 'test_trace'.

    A leaky diagnostic, for comparing with papers whose code picks the epoch
    on test (NCF's released code keeps its best test HR): nothing here
    selects, stops or checkpoints, so the run is the same without it.
    """
    traced, _ = self.job.evaluate(params, ("test",), False)
    self.log.write({"step": step, "epoch": self.epoch, "kind": "test_trace",
                    **traced["test"]})
