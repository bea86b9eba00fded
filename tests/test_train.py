"""The real training loop on tiny planted data: learns, repeats, resumes."""

import json
import os

import numpy as np
import pytest

from experiments.configs.base import base_config
from jaxrec.train.loop import train_and_evaluate


def _config(**train):
  c = base_config()
  c.data.synthetic.update(n_users=400, n_items=150, per_user=30, seed=0)
  c.model.dim = 16
  c.optim.learning_rate = 0.01
  c.train.update({"epochs": 8, "batch_size": 256, "steps_per_call": 16,
                  "log_every_steps": 50, **train})
  c.eval.n_negatives = 50
  return c


def _test_metrics(result):
  return {k: v for k, v in result["test"].items()}


@pytest.fixture(scope="module")
def popularity(tmp_path_factory):
  c = _config()
  c.model.name = "popularity"
  return train_and_evaluate(c, tmp_path_factory.mktemp("pop"))


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_mf_beats_popularity_on_planted_data(loss, popularity, tmp_path):
  result = train_and_evaluate(_config(loss=loss), tmp_path)
  for metric in ("full/NDCG@10", "sampled-uniform-50/NDCG@10",
                 "full/HR@10", "sampled-uniform-50/HR@10"):
    assert result["test"][metric] > 1.3 * popularity["test"][metric], metric
  # The run left its record.
  for name in ("config.json", "manifest.json", "metrics.jsonl",
               "results.json", "per_user.npz"):
    assert (tmp_path / name).exists(), name
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["xla_flags"] == os.environ.get("XLA_FLAGS", "")
  with np.load(tmp_path / "per_user.npz") as f:
    assert f["test/full/NDCG@10"].shape == (400,)
    assert np.isclose(f["test/full/NDCG@10"].mean(),
                      result["test"]["full/NDCG@10"])


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
  a = train_and_evaluate(_config(epochs=2), tmp_path / "a")
  b = train_and_evaluate(_config(epochs=2), tmp_path / "b")
  assert _test_metrics(a) == _test_metrics(b)
  c = _config(epochs=2)
  c.seed = 1
  assert _test_metrics(train_and_evaluate(c, tmp_path / "c")) != (
      _test_metrics(a))


def test_interrupted_run_resumes_bit_identically(tmp_path):
  full = train_and_evaluate(_config(epochs=4, checkpoint_every_steps=64),
                            tmp_path / "full")
  # Killed in epoch 3 (an epoch is 199 steps), last checkpoint at 384.
  cut = _config(epochs=4, checkpoint_every_steps=64, halt_after_steps=420)
  assert train_and_evaluate(cut, tmp_path / "cut") == {}
  steps = sorted(int(p.name) for p in (tmp_path / "cut/checkpoints/last")
                 .iterdir() if p.name.isdigit())
  assert steps[-1] < 420
  resumed = train_and_evaluate(
      _config(epochs=4, checkpoint_every_steps=64), tmp_path / "cut")
  assert _test_metrics(resumed) == _test_metrics(full)
  assert resumed["valid"] == full["valid"]
  # The metrics log has no duplicated or missing steps after the replay.
  log = [json.loads(x) for x in (tmp_path / "cut/metrics.jsonl")
         .read_text().splitlines()]
  ref = [json.loads(x) for x in (tmp_path / "full/metrics.jsonl")
         .read_text().splitlines()]
  strip = lambda rs: [(r["kind"], r["step"], r.get("loss")) for r in rs]
  assert strip(log) == strip(ref)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
  train_and_evaluate(_config(epochs=1), tmp_path)
  saved = sorted(p.name for p in (tmp_path / "checkpoints/last").iterdir())
  bad = _config(epochs=3)
  bad.optim.learning_rate = float("nan")
  with pytest.raises(FloatingPointError, match="Last good checkpoint: .*"):
    train_and_evaluate(bad, tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints/last").iterdir()
                ) == saved
  # The good checkpoint still resumes and finishes.
  result = train_and_evaluate(_config(epochs=2), tmp_path)
  assert np.isfinite(result["test"]["full/NDCG@10"])


def test_mesh_launcher_through_the_loop_matches_single(tmp_path):
  single = train_and_evaluate(_config(epochs=2), tmp_path / "single")
  mesh = train_and_evaluate(_config(epochs=2, launcher="mesh"),
                            tmp_path / "mesh")
  for k, v in single["test"].items():
    assert mesh["test"][k] == pytest.approx(v, abs=2e-3), k


@pytest.mark.parametrize("launcher", ["single", "pmap", "mesh"])
def test_training_loop_makes_no_implicit_transfers(launcher, tmp_path):
  config = _config(epochs=1, launcher=launcher, transfer_guard="disallow")
  result = train_and_evaluate(config, tmp_path)
  assert np.isfinite(result["test"]["full/NDCG@10"])


def test_validation_on_the_sampled_protocol_only(tmp_path):
  config = _config(epochs=2)
  config.eval.valid_full = False
  config.eval.select = "sampled-uniform-50/NDCG@10"
  result = train_and_evaluate(config, tmp_path)
  log = [json.loads(x) for x in (tmp_path / "metrics.jsonl")
         .read_text().splitlines()]
  valid = [r for r in log if r["kind"] == "valid"]
  assert valid and not any(k.startswith("full/") for k in valid[0])
  assert "full/NDCG@10" in result["test"]  # test still reports both
  config.eval.select = "full/NDCG@10"
  with pytest.raises(ValueError, match="valid_full"):
    train_and_evaluate(config, tmp_path / "bad")


def test_ratio_split_reports_multi_relevant_metrics(tmp_path, popularity):
  config = _config()
  config.data.update(split="ratio", test_ratio=0.25, valid_ratio=0.1)
  config.eval.select = "random-75-25-full/NDCG@10"
  result = train_and_evaluate(config, tmp_path / "mf")
  assert result["protocol"] == "random-75-25-full"
  names = set(result["test"])
  assert {"random-75-25-full/" + m for m in (
      "Recall@10", "Precision@10", "NDCG@10", "MAP@10")} <= names
  config.model.name = "popularity"
  pop = train_and_evaluate(config, tmp_path / "pop")
  for m in ("NDCG@10", "Recall@10"):
    key = "random-75-25-full/" + m
    assert result["test"][key] > 1.3 * pop["test"][key], m
  # Without a validation share, training runs its epochs and tests the last.
  config.model.name = "mf"
  config.data.valid_ratio = 0.0
  last = train_and_evaluate(config, tmp_path / "noval")
  assert "valid" not in last and last["test"]


def test_refit_retrains_on_train_plus_valid_for_the_best_epochs(tmp_path):
  config = _config(epochs=4)
  config.data.update(split="ratio", test_ratio=0.25, valid_ratio=0.1)
  config.eval.select = "random-75-25-full/NDCG@10"
  plain = train_and_evaluate(config, tmp_path / "plain")
  config.train.refit = True
  refit = train_and_evaluate(config, tmp_path / "refit")
  assert refit["valid"] == plain["valid"]            # phase 1 is the same
  assert 1 <= refit["refit_epochs"] <= 4
  assert refit["test"] != plain["test"]
  steps = [json.loads(x)["step"] for x in (tmp_path / "refit/refit/"
                                           "metrics.jsonl").read_text()
           .splitlines()]
  # The refit saw train + valid: more steps per epoch than phase 1.
  per_epoch = plain["best_step"] / refit["refit_epochs"]
  assert steps[-1] / refit["refit_epochs"] > per_epoch


def test_a_restart_after_early_stopping_does_not_train_on(tmp_path):
  config = _config(epochs=30)
  config.eval.patience = 1
  first = train_and_evaluate(config, tmp_path)
  assert first["epochs"] < 30
  again = train_and_evaluate(config, tmp_path)
  assert again["epochs"] == first["epochs"]
  assert again["test"] == first["test"]
