"""The shared loop on a toy Job: selection, stateful steps, resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from experiments.configs.base import base_config
from jaxrec import parallel
from jaxrec.train import families, records, trainer
from jaxrec.train.step import TrainState

_W = np.array([1.5, -2.0, 0.5], np.float32)


def _config(**train):
  c = base_config()
  c.train.update({"epochs": 3, "batch_size": 8, "steps_per_call": 4,
                  "log_every_steps": 5, **train})
  return c


def _data(seed, n=200):
  x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
  return x, x @ _W


def _mse(params, x, y):
  return jnp.mean((x @ params["w"] - y) ** 2)


def _job(train_step=None, state_cls=TrainState, **fields):
  x, y = _data(0)
  sets = {"valid": _data(1), "test": _data(2)}
  template = state_cls.create(apply_fn=None, params={"w": jnp.zeros(3)},
                              tx=optax.sgd(0.05), **fields)

  def loss(params, batch, key, apply_fn):
    del key, apply_fn
    return _mse(params, batch["x"], batch["y"]), {}

  def epoch_batches(epoch, rng):
    del epoch
    keep = rng.permutation(len(x))[:192]
    return {"x": x[keep].reshape(24, 8, 3), "y": y[keep].reshape(24, 8)}

  def evaluate(params, roles, final):
    del final
    out = {r: -float(_mse(params, *sets[r])) for r in roles}
    return ({r: {"neg_mse": v} for r, v in out.items()},
            {r: {"neg_mse": np.full(3, v)} for r, v in out.items()})

  return trainer.Job(template=template, loss_fn=loss,
                     epoch_batches=epoch_batches, evaluate=evaluate,
                     select="neg_mse", train_step=train_step)


def test_fit_learns_and_writes_its_record(tmp_path):
  result = trainer.fit(_config(), tmp_path, _job(), {"dataset": "toy"})
  assert result["test"]["neg_mse"] > -1e-3      # the planted weights
  assert result["dataset"] == "toy" and result["epochs"] == 3
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["test"] == result["test"]
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open()]
  valid = [r for r in logged if r["kind"] == "valid"]
  assert [r["epoch"] for r in valid] == [1, 2, 3]
  # best_epoch is the epoch of the best validation check, not the last one.
  assert saved["best_epoch"] == max(valid, key=lambda r: r["neg_mse"])["epoch"]


class _Counting(TrainState):
  seen: jax.Array = struct.field(default_factory=lambda: jnp.zeros(()))


def _counting_step(state, batch, key):
  """A stateful step: besides training, sums every input it was given."""
  del key
  loss, grads = jax.value_and_grad(_mse)(state.params, batch["x"],
                                         batch["y"])
  state = state.apply_gradients(grads=grads)
  return state.replace(seen=state.seen + batch["x"].sum()), {"loss": loss}


def _seen(config, workdir, job):
  t = trainer.Trainer(config, workdir, job)
  t.run()
  return t, float(t.launcher.get_state(t.state).seen)


def test_custom_train_step_carries_its_state_through_a_resume(tmp_path):
  job = _job(_counting_step, _Counting)
  # Every epoch's inputs, replayed from the same per-epoch generators.
  from jaxrec.data import negatives
  expected = sum(job.epoch_batches(e, negatives.epoch_rng(0, e))["x"].sum()
                 for e in range(3))
  _, whole = _seen(_config(), tmp_path / "whole", job)
  assert whole == pytest.approx(expected, rel=1e-5)
  cut, _ = _seen(_config(halt_after_steps=30, checkpoint_every_steps=8),
                 tmp_path / "cut", job)
  assert cut.halted
  _, resumed = _seen(_config(checkpoint_every_steps=8), tmp_path / "cut", job)
  assert resumed == whole


def test_custom_train_step_is_single_device_only():
  with pytest.raises(ValueError, match="single"):
    parallel.make_launcher("pmap", None, 8, train_step=_counting_step)


def test_unknown_family_is_named():
  c = _config()
  c.family = "nope"
  with pytest.raises(ValueError, match="nope"):
    families.train_and_evaluate(c, "/nonexistent")


def test_traced_test_changes_nothing_and_peaks_at_or_above_selection(
    tmp_path):
  plain = trainer.fit(_config(), tmp_path / "plain", _job())
  config = _config()
  config.eval.trace_test = True
  traced = trainer.fit(config, tmp_path / "traced", _job())
  untimed = lambda r: {k: v for k, v in r.items() if k != "train_seconds"}
  assert untimed(traced) == untimed(plain)  # same training, selection, test
  assert records.best_traced_test(tmp_path / "plain", "neg_mse") is None
  logged = [json.loads(l) for l in (tmp_path / "traced/metrics.jsonl").open()]
  trace = [r for r in logged if r["kind"] == "test_trace"]
  assert [r["epoch"] for r in trace] == [1, 2, 3]
  # The trace at the epoch chosen on validation is the reported test figure;
  # its best epoch is on test, so it is at least as good (the leak).
  chosen = next(r for r in trace if r["epoch"] == traced["best_epoch"])
  assert chosen["neg_mse"] == traced["test"]["neg_mse"]
  peak = records.best_traced_test(tmp_path / "traced", "neg_mse")
  assert peak["neg_mse"] == max(r["neg_mse"] for r in trace)
  assert peak["neg_mse"] >= traced["test"]["neg_mse"]


def test_best_traced_test_keeps_the_earliest_of_a_tie(tmp_path):
  log = records.MetricsLog(tmp_path)
  for epoch, hr in [(1, 0.5), (2, 0.7), (3, 0.7), (4, 0.6)]:
    log.write({"step": epoch, "epoch": epoch, "kind": "test_trace",
               "HR@10": hr})
    log.write({"step": epoch, "epoch": epoch, "kind": "valid", "HR@10": 0.9})
  assert records.best_traced_test(tmp_path, "HR@10")["epoch"] == 2
  with pytest.raises(KeyError, match="NDCG@10"):
    records.best_traced_test(tmp_path, "NDCG@10")


def test_select_role_test_picks_the_best_test_epoch_and_says_so(tmp_path):
  plain = trainer.fit(_config(), tmp_path / "plain", _job())
  assert "selected_on" not in plain
  config = _config()
  config.eval.select_role = "test"
  leaky = trainer.fit(config, tmp_path / "leaky", _job())
  assert leaky["selected_on"] == "test"
  logged = [json.loads(l) for l in (tmp_path / "leaky/metrics.jsonl").open()]
  assert not [r for r in logged if r["kind"] == "valid"]
  chosen = [r for r in logged if r["kind"] == "select_on_test"]
  best = max(chosen, key=lambda r: r["neg_mse"])
  assert leaky["best_epoch"] == best["epoch"]
  assert leaky["test"]["neg_mse"] == best["neg_mse"]
  assert leaky["test"]["neg_mse"] >= plain["test"]["neg_mse"]


def test_select_role_is_checked_and_refuses_a_refit(tmp_path):
  config = _config()
  config.eval.select_role = "tset"
  with pytest.raises(ValueError, match="tset"):
    trainer.fit(config, tmp_path / "typo", _job())
  config.eval.select_role = "test"
  config.train.refit = True
  with pytest.raises(ValueError, match="refit"):
    trainer.fit_with_refit(config, tmp_path / "refit", _job, None)


def test_a_bad_metrics_line_is_named_by_file_and_line(tmp_path):
  log = records.MetricsLog(tmp_path)
  log.write({"step": 1, "epoch": 1, "kind": "test_trace", "HR@10": 0.5})
  with log.path.open("a") as f:
    f.write('{"step": 2, "kind": "test_tr\n')      # a write cut short
  with pytest.raises(ValueError, match=r"metrics\.jsonl:2: expected one JSON"):
    records.best_traced_test(tmp_path, "HR@10")
  with pytest.raises(ValueError, match=r"metrics\.jsonl:2"):
    log.truncate_after(1)
  assert log.path.read_text().count("\n") == 2      # nothing was dropped
