"""Checkpoints that keep the newest few and the best, and verify on restore.

Layout under ``directory``::

  last/<step>/          newest ``keep_last`` checkpoints (Orbax-managed)
  best/<step>/          the one with the highest validation metric so far
  */<step>/sha256.json  digest of every file in the step, written by us

Each step holds two Orbax items: ``state`` (a pytree of arrays) and ``meta``
(JSON: ``{"meta": <the caller's dict>, "metric": <float or null>}``).

Atomicity comes from Orbax: it writes ``<step>.orbax-checkpoint-tmp`` and
renames it to ``<step>`` only once everything is on disk, so a killed save
leaves no step that ``steps()`` reports (the leftover is removed when the
next Checkpointer opens the directory). Integrity is ours: Orbax does not
notice flipped bytes in array data, so once a save has finalized we record a
sha256 of each file and check it before restoring.

This is the only module that uses Orbax. Not thread-safe; single process.
"""

from __future__ import annotations

import hashlib
import json
import logging as std_logging
import math
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

DIGEST_FILE = "sha256.json"
_WHICH = ("last", "best")
_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
  """A checkpoint is missing, truncated, corrupt or could not be read.

  The message starts with the offending path, e.g.
  ``/runs/a/last/4/state/d/ab12: size 10 bytes, expected 4096 (truncated)``.
  """

  def __init__(self, path: str | os.PathLike, problem: str):
    self.path = os.fspath(path)
    self.problem = problem
    super().__init__(f"{self.path}: {problem}")


def _file_digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK):
      h.update(chunk)
  return h.hexdigest()


def write_digest(step_dir: str) -> None:
  """Records size and sha256 of every file in a finished step directory."""
  files = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, step_dir)
      if rel != DIGEST_FILE:
        files[rel] = {"size": os.path.getsize(full),
                      "sha256": _file_digest(full)}
  target = os.path.join(step_dir, DIGEST_FILE)
  # Write-then-rename: a crash here must not leave a half digest that would
  # make a good checkpoint look corrupt.
  tmp = target + ".tmp"
  with open(tmp, "w") as f:
    json.dump({"algorithm": "sha256", "files": files}, f, indent=0)
  os.replace(tmp, target)


def verify_digest(step_dir: str) -> bool:
  """Checks ``step_dir`` against its digest; False if it has none.

  Raises:
    CheckpointError: naming the first file that is missing, of the wrong size
      or has the wrong hash, or the digest file if it is unreadable.
  """
  digest_path = os.path.join(step_dir, DIGEST_FILE)
  if not os.path.exists(digest_path):
    return False
  try:
    with open(digest_path) as f:
      files = json.load(f)["files"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(digest_path, f"unreadable digest: {e}") from e
  for rel, want in sorted(files.items()):
    full = os.path.join(step_dir, rel)
    if not os.path.isfile(full):
      raise CheckpointError(full, "file is missing")
    size = os.path.getsize(full)
    if size != want["size"]:
      hint = " (truncated)" if size < want["size"] else ""
      raise CheckpointError(
          full, f"size {size} bytes, expected {want['size']}{hint}")
    if _file_digest(full) != want["sha256"]:
      raise CheckpointError(full, "sha256 does not match the recorded digest")
  return True


def _to_jax(tree: Any) -> Any:
  """Turns numpy leaves (Orbax returns them for numpy templates) into jax."""
  return jax.tree.map(
      lambda x: jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic))
      else x, tree)


class Checkpointer:
  """Saves to ``last/`` (newest ``keep_last``) and ``best/`` (highest metric).

  Saves are asynchronous: ``save`` returns once the arrays are copied off the
  training state. Always ``close`` (or use ``with``): Orbax's background
  writer cannot finish once the interpreter shuts down, so an unclosed final
  save is silently left unfinished. One writer per directory: opening a
  Checkpointer deletes unfinished saves found there.
  """

  def __init__(self, directory: str | os.PathLike, *, keep_last: int = 2,
               async_save: bool = True):
    if keep_last < 1:
      raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    self.directory = os.path.abspath(os.fspath(directory))
    keep = {"last": keep_last, "best": 1}
    self._managers = {
        which: ocp.CheckpointManager(
            os.path.join(self.directory, which),
            options=ocp.CheckpointManagerOptions(
                preservation_policy=ocp.checkpoint_managers.LatestN(
                    n=keep[which]),
                enable_async_checkpointing=async_save,
                # Removes `<step>.orbax-checkpoint-tmp` left by a killed save.
                cleanup_tmp_directories=True,
            ),
            item_names=("state", "meta"),
        ) for which in _WHICH
    }
    self._pending: list[tuple[str, int]] = []  # Saved, digest not yet written.
    self._closed = False
    self._best_metric = self._read_best_metric()

  @property
  def best_metric(self) -> float | None:
    """The highest metric saved to ``best/`` so far (survives restarts)."""
    return self._best_metric

  def step_dir(self, step: int, which: str = "last") -> str:
    """The directory of one step (it may not exist)."""
    self._manager(which)
    return os.path.join(self.directory, which, str(step))

  def steps(self, which: str = "last") -> list[int]:
    """Sorted steps in ``last/`` or ``best/`` (includes saves in flight)."""
    return sorted(self._manager(which).all_steps())

  def save(self, step: int, state: Any, meta: dict, *,
           metric: float | None = None) -> None:
    """Saves to ``last/``; also to ``best/`` if ``metric`` beats the best.

    An existing checkpoint at ``step`` (e.g. a corrupt one that a resumed run
    reaches again) is replaced.
    """
    self._check_open()
    self._flush()
    # The JSON round trip fails early, in the caller's thread, on non-JSON
    # values, and decouples the background write from later edits of `meta`.
    record = {"meta": json.loads(json.dumps(meta)), "metric": None}
    targets = ["last"]
    if metric is not None:
      metric = float(metric)
      record["metric"] = metric
      if not math.isnan(metric) and (self._best_metric is None
                                     or metric > self._best_metric):
        targets.append("best")
        self._best_metric = metric
    for which in targets:
      manager = self._managers[which]
      if step in manager.all_steps():
        logging.warning("Replacing existing checkpoint %s",
                        self.step_dir(step, which))
        manager.delete(step)
      manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          meta=ocp.args.JsonSave(record)))
      self._pending.append((which, step))

  def restore(self, template: Any, *, step: int | None = None,
              which: str = "last") -> tuple[Any, dict]:
    """Restores ``(state, meta)`` of ``step`` (default: the newest).

    ``template`` gives the target structure, shapes, dtypes (Orbax casts to
    them) and shardings, e.g. the freshly initialised state. The state comes
    back as jax arrays (Python scalars in ``template`` stay scalars).

    Raises:
      CheckpointError: naming the path, if the checkpoint is missing,
        truncated, corrupt or does not match ``template``.
    """
    self._check_open()
    self._flush()
    steps = self.steps(which)
    if step is None:
      if not steps:
        raise CheckpointError(os.path.join(self.directory, which),
                              "no checkpoints")
      step = steps[-1]
    path = self.step_dir(step, which)
    if step not in steps:
      raise CheckpointError(path, f"no such checkpoint (have steps {steps})")
    verify_digest(path)
    try:
      restored = self._managers[which].restore(
          step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(template),
              meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax and TensorStore raise many types.
      raise CheckpointError(
          path, f"Orbax could not restore it: {type(e).__name__}: {e}") from e
    record = restored.meta
    if not isinstance(record, dict) or "meta" not in record:
      raise CheckpointError(path, f"meta item has no 'meta' key: {record!r}")
    return _to_jax(restored.state), record["meta"]

  def restore_latest_good(self, template: Any) -> tuple[Any, dict] | None:
    """Restores the newest step in ``last/`` that is intact.

    Returns:
      ``(state, meta)``, or None if there is no checkpoint at all.

    Raises:
      CheckpointError: if every checkpoint in ``last/`` is corrupt.
    """
    steps = self.steps("last")
    problems = []
    for step in reversed(steps):
      try:
        return self.restore(template, step=step)
      except CheckpointError as e:
        logging.warning("Skipping corrupt checkpoint: %s", e)
        problems.append(str(e))
    if not steps:
      return None
    raise CheckpointError(
        os.path.join(self.directory, "last"),
        f"all {len(steps)} checkpoints are corrupt: " + "; ".join(problems))

  def wait(self) -> None:
    """Blocks until in-flight saves are on disk and their digests written."""
    self._check_open()
    self._flush()

  def close(self) -> None:
    """Finishes in-flight saves and releases Orbax's resources; idempotent."""
    if self._closed:
      return
    try:
      self._flush()
    finally:
      self._closed = True
      for manager in self._managers.values():
        manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in self._managers:
      raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    return self._managers[which]

  def _check_open(self) -> None:
    if self._closed:
      raise RuntimeError(f"Checkpointer for {self.directory} is closed")

  def _flush(self) -> None:
    """Waits for Orbax, then writes digests of the steps it finalized."""
    error = None
    for which, manager in self._managers.items():
      try:
        manager.wait_until_finished()
      except Exception as e:  # Re-raised below, once digests are written.
        if error is None:
          error = CheckpointError(
              os.path.join(self.directory, which),
              f"asynchronous save failed: {type(e).__name__}: {e}")
          error.__cause__ = e
    pending, self._pending = self._pending, []
    for which, step in pending:
      path = self.step_dir(step, which)
      # A failed save never renames its tmp dir, so it gets no digest.
      if os.path.isdir(path):
        write_digest(path)
    if error is not None:
      raise error

  def _read_best_metric(self) -> float | None:
    steps = self.steps("best")
    if not steps:
      return None
    path = self.step_dir(steps[-1], "best")
    try:
      verify_digest(path)
      record = self._managers["best"].restore(
          steps[-1], args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
      return float(record["metric"])
    except Exception as e:  # A corrupt best is worth nothing; let it go.
      logging.warning("Cannot read the best metric from %s (%s); the next "
                      "save with a metric replaces it.", path, e)
      return None


class _DropOrbaxInfo:
  """A logging filter that keeps Orbax's warnings but not its INFO chatter."""

  def filter(self, record) -> bool:
    return (record.levelno >= std_logging.WARNING
            or "orbax" not in record.pathname)


def quiet_orbax_logs() -> None:
  """Hides Orbax's per-save INFO lines (called by the experiment launchers)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropOrbaxInfo) for f in handler.filters):
    handler.addFilter(_DropOrbaxInfo())
