"""Tests for jaxrec.checkpoint: round trip, retention, corruption, kills."""

from __future__ import annotations

import glob
import logging
import os
import signal
import subprocess
import sys
import textwrap

from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.checkpoint import Checkpointer, CheckpointError

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One instance, so that restored and expected TrainStates have equal treedefs
# (the optimizer is static pytree data compared by identity).
_TX = optax.adam(1e-2)


def _apply(params, x):
  return x @ params["emb"] + params["bias"]


def _fresh_state() -> train_state.TrainState:
  """The template a trainer would build before restoring."""
  params = {
      "emb": jnp.zeros((6, 4), jnp.float32),
      "bias": jnp.zeros((4,), jnp.bfloat16),
  }
  return train_state.TrainState.create(
      apply_fn=_apply, params=params, tx=_TX)


def _state_at(step: int) -> train_state.TrainState:
  """A distinct state per step: random params, nonzero Adam moments.

  Int leaves: the Adam count (int32 array) and ``step`` (a Python int).
  """
  key = jax.random.PRNGKey(step)
  state = _fresh_state()
  params = {
      "emb": jax.random.normal(key, (6, 4)),
      "bias": jnp.full((4,), step, jnp.bfloat16),
  }
  state = state.replace(params=params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)
  for _ in range(step):
    state = state.apply_gradients(grads=grads)
  return state


def _assert_tree_equal(got, want) -> None:
  got_leaves, got_def = jax.tree.flatten(got)
  want_leaves, want_def = jax.tree.flatten(want)
  assert got_def == want_def
  for g, w in zip(got_leaves, want_leaves):
    assert not isinstance(g, np.ndarray), f"numpy leaf {g!r}"
    assert np.asarray(g).dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _meta(step: int) -> dict:
  return {"epoch": step, "step_in_epoch": 0,
          "config": {"lr": 0.01, "dims": [6, 4], "name": "mf"},
          "early_stopping": {"bad_epochs": 0}}


def _largest_data_file(step_dir: str) -> str:
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"),
                                recursive=True) if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def test_round_trip_is_exact(tmp_path):
  state = _state_at(3)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(3, state, _meta(3))
    got, meta = ckpt.restore(_fresh_state())
  assert got.step == 3
  _assert_tree_equal(got, state)
  assert meta == _meta(3)
  # The files carry a digest once the save is finished.
  assert os.path.isfile(tmp_path / "last" / "3" / "sha256.json")


def test_restore_into_sharded_template(tmp_path):
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  state = {"table": jax.device_put(jnp.arange(32.0).reshape(16, 2), sharding)}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, {"table": jnp.arange(32.0).reshape(16, 2)}, {})
    got, _ = ckpt.restore(state)
  assert got["table"].sharding == sharding
  _assert_tree_equal(got, state)


def test_numpy_template_gives_jax_arrays(tmp_path):
  state = {"x": jnp.arange(4.0), "n": jnp.arange(3, dtype=jnp.int32)}
  with Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state, {})
    got, _ = ckpt.restore(jax.tree.map(np.zeros_like, state))
  _assert_tree_equal(got, state)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(got))


def test_keeps_newest_and_best(tmp_path):
  metrics = {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.2}
  with Checkpointer(tmp_path, keep_last=2) as ckpt:
    for step, metric in metrics.items():
      ckpt.save(step, _state_at(step), _meta(step), metric=metric)
    ckpt.wait()
    assert ckpt.steps() == [3, 4]
    assert sorted(os.listdir(tmp_path / "last")) == ["3", "4"]
    assert ckpt.steps("best") == [2]
    assert sorted(os.listdir(tmp_path / "best")) == ["2"]
    got, meta = ckpt.restore(_fresh_state(), which="best")
  _assert_tree_equal(got, _state_at(2))
  assert meta == _meta(2)

  with Checkpointer(tmp_path, keep_last=2) as ckpt:
    assert ckpt.best_metric == 0.5
    ckpt.save(5, _state_at(5), _meta(5), metric=0.4)
    ckpt.wait()
    assert ckpt.steps("best") == [2]
    ckpt.save(6, _state_at(6), _meta(6), metric=0.6)
    ckpt.wait()
    assert ckpt.steps("best") == [6]
    assert ckpt.steps() == [5, 6]
    assert ckpt.best_metric == 0.6


def _truncate(path: str) -> None:
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)


def _flip_middle(path: str) -> None:
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    mid = len(data) // 2
    for i in range(mid, mid + 8):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


@pytest.mark.parametrize("corrupt", [_truncate, _flip_middle],
                         ids=["truncated", "flipped"])
def test_corrupt_newest_falls_back_to_older(tmp_path, caplog, corrupt):
  # Big enough that the array data lives in its own chunk file.
  big = {"emb": jax.random.normal(jax.random.PRNGKey(0), (256, 64))}
  states = {s: jax.tree.map(lambda x, s=s: x + s, big) for s in (1, 2)}
  with Checkpointer(tmp_path) as ckpt:
    for step, state in states.items():
      ckpt.save(step, state, _meta(step))
  victim = _largest_data_file(str(tmp_path / "last" / "2"))
  size = os.path.getsize(victim)
  corrupt(victim)
  assert (os.path.getsize(victim) == size) == (corrupt is _flip_middle)

  template = jax.tree.map(jnp.zeros_like, big)
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(CheckpointError) as err:
      ckpt.restore(template, step=2)
    assert victim in str(err.value)
    with caplog.at_level(logging.WARNING):
      got, meta = ckpt.restore_latest_good(template)
  _assert_tree_equal(got, states[1])
  assert meta == _meta(1)
  assert any(victim in r.getMessage() for r in caplog.records)


def test_missing_all_corrupt_and_empty(tmp_path):
  template = _fresh_state()
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.restore_latest_good(template) is None
    with pytest.raises(CheckpointError, match="no checkpoints"):
      ckpt.restore(template)
    ckpt.save(1, _state_at(1), _meta(1))
    with pytest.raises(CheckpointError) as err:
      ckpt.restore(template, step=7)
    assert str(tmp_path / "last" / "7") in str(err.value)
    ckpt.wait()
    os.remove(tmp_path / "last" / "1" / "meta" / "metadata")
    with pytest.raises(CheckpointError, match="all 1 checkpoints"):
      ckpt.restore_latest_good(template)
    # A template that does not fit is an error naming the checkpoint too.
    os.remove(tmp_path / "last" / "1" / "sha256.json")
    with pytest.raises(CheckpointError) as err:
      ckpt.restore({"nope": jnp.zeros(2)})
    assert str(tmp_path / "last" / "1") in str(err.value)
    # A resumed run that reaches a broken step again overwrites it.
    ckpt.save(1, _state_at(1), _meta(1))
    got, meta = ckpt.restore(template)
  _assert_tree_equal(got, _state_at(1))
  assert meta == _meta(1)


_CHILD = textwrap.dedent("""
    import glob, os, sys, time
    import jax.numpy as jnp
    from jaxrec.checkpoint import Checkpointer
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(1, {"w": jnp.arange(12.0).reshape(3, 4)}, {"epoch": 1})
    ckpt.wait()
    big = {"w": jnp.arange(2 ** 24, dtype=jnp.float32).reshape(4096, 4096)}
    big["w"].block_until_ready()
    ckpt.save(2, big, {"epoch": 2})
    # Orbax may create the temporary directory in the background; once it is
    # there, the 64 MB are being written and the parent may kill us.
    tmp = os.path.join(sys.argv[1], "last", "2.orbax-checkpoint-tmp")
    while not glob.glob(tmp + "*"):
      time.sleep(0.001)
    print("saving", flush=True)
    ckpt.wait()
    print("saved", flush=True)
""")


def test_killed_mid_save_keeps_previous(tmp_path):
  env = dict(os.environ, PYTHONPATH=_REPO_ROOT)
  child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)],
                           env=env, stdout=subprocess.PIPE, text=True)
  try:
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
  finally:
    child.wait(timeout=30)
  assert line.strip() == "saving"
  assert child.returncode == -signal.SIGKILL
  # Step 2 died unfinished: only Orbax's temporary directory is there.
  leftovers = os.listdir(tmp_path / "last")
  assert "2" not in leftovers
  assert any(name.startswith("2.orbax-checkpoint-tmp") for name in leftovers)

  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.steps() == [1]
    got, meta = ckpt.restore_latest_good({"w": jnp.zeros((3, 4))})
  np.testing.assert_array_equal(got["w"], jnp.arange(12.0).reshape(3, 4))
  assert meta == {"epoch": 1}
  assert os.listdir(tmp_path / "last") == ["1"]
