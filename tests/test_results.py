"""Significance in the results tables, on fake sweep run directories."""

import json
import os
import subprocess

import numpy as np
import pytest

from experiments import sweep
from experiments.configs.base import base_config
from jaxrec import abtest, results
from jaxrec.train import records

USERS = 500
PROTOCOLS = ("sampled-uniform-20", "full")


def _fake_sweep(root, lifts, seeds=(0, 1, 2), users=USERS, skip=()):
  """Run dirs as the sweep leaves them: results.json + per_user.npz.

  Model m's per-user NDCG@10 is a shared per-user level plus lifts[m] plus
  seed noise; HR@10 is 0/1.  Models in `skip` have no per_user.npz.
  """
  rng = np.random.default_rng(0)
  level = rng.random(users)
  entries = []
  for model, lift in lifts.items():
    for seed in seeds:
      entry = dict(model=model, variant="v", seed=seed)
      entries.append(entry)
      workdir = root / sweep.run_name(entry)
      workdir.mkdir(parents=True)
      per_user, test = {}, {}
      for protocol in PROTOCOLS:
        ndcg = np.clip(level + lift + rng.normal(0, 0.2, users), 0, 1)
        hit = (rng.random(users) < ndcg).astype(np.float32)
        for name, v in (("NDCG@10", ndcg), ("HR@10", hit)):
          per_user[f"test/{protocol}/{name}"] = v.astype(np.float32)
          test[f"{protocol}/{name}"] = float(np.mean(v))
      records.write_json(workdir / "results.json", {
          "protocol": PROTOCOLS[0], "dataset": "fake", "test": test,
          "negatives_sha256": "ab" * 32, "train_seconds": 1.0, "epochs": 3})
      if model not in skip:
        np.savez(workdir / "per_user.npz", **per_user)
  return entries


def _rows(tmp_path, lifts, **kwargs):
  entries = _fake_sweep(tmp_path, lifts, skip=kwargs.pop("skip", ()))
  runs = sweep.run_sweep(base_config(), entries, tmp_path)  # trains nothing
  metrics = ("HR@10", "NDCG@10")
  rows = results.aggregate(runs, metrics)
  return runs, results.significance(runs, rows, metrics, **kwargs)


def test_rows_are_tested_against_the_best_row_on_seed_pooled_users(tmp_path):
  runs, rows = _rows(tmp_path, {"A": 0.0, "B": 0.05, "C": 0.049})
  by = {(r["model"], r["protocol"]): r for r in rows}
  for protocol in PROTOCOLS:
    assert by[("B", protocol)]["significance"]["NDCG@10"]["reference"] is None
    sig = by[("A", protocol)]["significance"]["NDCG@10"]
    assert sig["reference"] == "B v" and sig["p"] < 1e-6  # planted lift
    # The p-value is a paired t-test on per-user means over the 3 seeds.
    pooled = {}
    for model in "AB":
      pooled[model] = np.mean([
          np.load(tmp_path / f"{model}-v-seed{s}/per_user.npz")[
              f"test/{protocol}/NDCG@10"] for s in range(3)], axis=0)
    want = abtest.paired_t(pooled["B"], pooled["A"])
    assert np.isclose(sig["p"], want.p_value)
    assert np.isclose(sig["diff"], want.estimate) and sig["diff"] < 0
    assert np.allclose(sig["ci"], want.ci)
    assert by[("C", protocol)]["significance"]["NDCG@10"]["p"] > 1e-3
  text = results.to_markdown({"name": "t", "command": "c", "date": "d",
                              "commit": "x", "machine": "m"}, rows)
  assert "(ref)" in text and "(p<0.001)" in text
  assert "paired-t test" in text
  json.dumps(rows)  # the JSON table can hold it


def test_a_named_baseline_is_the_reference_and_tests_are_selectable(tmp_path):
  _, rows = _rows(tmp_path, {"A": 0.0, "B": 0.05}, reference=("A", "v"),
                  test="wilcoxon")
  b = next(r for r in rows if r["model"] == "B")
  sig = b["significance"]["HR@10"]
  assert sig["reference"] == "A v" and sig["test"] == "wilcoxon"
  assert sig["diff"] > 0 and sig["ci"] is None
  with pytest.raises(ValueError, match="expected one of"):
    results.significance([], rows, ("HR@10",), test="t")


def test_rows_without_per_user_files_get_no_p_value(tmp_path):
  runs, rows = _rows(tmp_path, {"A": 0.1, "B": 0.05, "C": 0.0},
                     skip=("A",))
  assert all("significance" not in r for r in rows if r["model"] == "A")
  # A is the best row but cannot be tested, so the next best is the ref.
  for r in rows:
    if r["model"] == "C":
      assert r["significance"]["HR@10"]["reference"] == "B v"
  text = results.to_markdown({"name": "t", "command": "c", "date": "d",
                              "commit": "x", "machine": "m"}, rows)
  assert "| A | v |" in text and "| A | v | full | 0." in text
  assert not any("(p" in line or "(ref)" in line
                 for line in text.splitlines() if line.startswith("| A |"))
  # Without any per-user file, the table is the plain one.
  for run in runs:
    run.pop("workdir")
  plain = results.aggregate(runs, ("HR@10",))
  assert results.significance(runs, plain, ("HR@10",)) == plain


def test_runs_on_different_users_cannot_be_paired(tmp_path):
  entries = _fake_sweep(tmp_path / "a", {"A": 0.0}, users=USERS)
  entries += _fake_sweep(tmp_path / "b", {"B": 0.1}, users=USERS - 1)
  runs = []
  for sub, model in (("a", "A"), ("b", "B")):
    runs += sweep.run_sweep(base_config(),
                            [e for e in entries if e["model"] == model],
                            tmp_path / sub)
  rows = results.aggregate(runs, ("HR@10",))
  with pytest.raises(ValueError, match=f"{USERS - 1} users vs {USERS}"):
    results.significance(runs, rows, ("HR@10",))


def test_stored_user_ids_in_another_order_cannot_be_paired(tmp_path):
  entries = _fake_sweep(tmp_path, {"A": 0.0, "B": 0.1}, seeds=(0,))
  for entry, order in zip(entries, (np.arange(USERS), np.arange(USERS)[::-1])):
    path = tmp_path / sweep.run_name(entry) / "per_user.npz"
    arrays = dict(np.load(path))
    np.savez(path, **arrays, **{"test/users": order + 1})
  runs = sweep.run_sweep(base_config(), entries, tmp_path)
  rows = results.aggregate(runs, ("HR@10",))
  with pytest.raises(ValueError, match="different user ids or order"):
    results.significance(runs, rows, ("HR@10",))


def test_the_sweep_names_its_baseline_by_entry_or_flag():
  entries = [dict(model="GMF", variant="factors=8", seed=0),
             dict(model="GMF", variant="factors=16", seed=0, baseline=True),
             dict(model="NeuMF", variant="factors=16", seed=0)]
  assert sweep.reference(entries) == ("GMF", "factors=16")
  assert sweep.reference(entries, "NeuMF-factors=16") == ("NeuMF",
                                                          "factors=16")
  assert sweep.reference(entries[:1]) is None  # the best row, per column
  with pytest.raises(ValueError, match="no sweep entry named 'MLP-x'"):
    sweep.reference(entries, "MLP-x")


def test_command_line_reruns_the_process(monkeypatch):
  monkeypatch.setenv("JAXREC_DATA_DIR", "/data dir")
  monkeypatch.delenv("PYTHONPATH", raising=False)
  argv = ["/x/experiments/sweep.py", "--only=^(A|B)", "--note=it's"]
  assert results.command_line(argv, module="experiments.sweep") == (
      "JAXREC_DATA_DIR='/data dir' python -m experiments.sweep "
      "'--only=^(A|B)' '--note=it'\"'\"'s'")
  assert results.command_line(["scripts/b.py", "--k=2"],
                              env=("PYTHONPATH",)) == (
      "python scripts/b.py --k=2")


def test_git_commit_is_dirty_for_code_changes_not_for_results(tmp_path,
                                                              monkeypatch):
  def git(*args):
    subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                   capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t",
                            GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                            GIT_COMMITTER_EMAIL="t@t"))

  (tmp_path / "results").mkdir()
  (tmp_path / "code.py").write_text("x = 1\n")
  (tmp_path / "results" / "table.md").write_text("| a |\n")
  git("init", "-q")
  git("add", ".")
  git("commit", "-q", "-m", "init")
  monkeypatch.setattr(records, "REPO_ROOT", tmp_path)
  clean = records.git_commit(short=True)
  assert "+dirty" not in clean
  (tmp_path / "results" / "table.md").write_text("| b |\n")
  assert records.git_commit(short=True) == clean
  (tmp_path / "code.py").write_text("x = 2\n")
  assert records.git_commit(short=True) == clean + "+dirty"


def test_machine_line_names_cpu_model_and_vector_isa(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n"
                  "flags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n")
  assert records.cpu_detail(str(info)) == " (Some CPU 9000; AVX2)"
  info.write_text("model name\t: X\nflags\t\t: avx2 avx512f amx_tile\n")
  assert records.cpu_detail(str(info)) == " (X; AVX-512, AMX)"
  assert records.cpu_detail(str(tmp_path / "missing")) == ""
  assert records.machine().split(" CPU")[0].endswith("-core " +
                                                     records.platform.machine())


def test_pool_equals_the_statistics_of_all_seeds_together():
  rng = np.random.default_rng(0)
  values = [rng.random(k) for k in (1, 2, 4)]       # disjoint seed sets

  def row(v, seconds):
    return {"model": "M", "variant": "v", "protocol": "p", "seeds": len(v),
            "epochs": 3.0, "train_seconds": seconds, "metrics": {
                "HR@10": {"mean": float(v.mean()),
                          "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0},
                "MRR": {"mean": 0.0, "std": 0.0}}}

  rows = [row(v, s) for v, s in zip(values, (10.0, 40.0, 70.0))]
  del rows[1]["metrics"]["MRR"]
  pooled = results.pool(rows, variant="pooled")
  everything = np.concatenate(values)
  assert pooled["metrics"]["HR@10"]["mean"] == pytest.approx(
      everything.mean())
  assert pooled["metrics"]["HR@10"]["std"] == pytest.approx(
      everything.std(ddof=1))
  assert set(pooled["metrics"]) == {"HR@10"}      # MRR: not in every row
  assert pooled["seeds"] == 7 and pooled["variant"] == "pooled"
  assert pooled["epochs"] == 3.0 and "train_seconds" not in pooled


def test_measured_row_renders_its_values_as_single_measurements():
  row = results.measured_row("SASRec", "hash", "train-step", "shapes",
                             seqs_per_s=493.0, ratio=1.16)
  assert row["metrics"] == {"seqs_per_s": {"mean": 493.0, "std": 0.0},
                            "ratio": {"mean": 1.16, "std": 0.0}}
  header = {"name": "t", "command": "c", "date": "d", "commit": "x",
            "machine": "m"}
  table = results.to_markdown(header, [row])
  assert "| SASRec | hash | train-step | 493 | 1.1600 |" in table


def test_best_epoch_is_averaged_and_shown_beside_the_epochs_trained():
  def run(seed, best):
    result = {"protocol": "p", "test": {"p/HR@10": 0.5 + seed / 10},
              "train_seconds": 1.0, "epochs": 40, "best_epoch": best}
    return {"model": "M", "variant": "v", "dataset": "d", "seed": seed,
            "result": result}

  (row,) = results.aggregate([run(0, 20), run(1, 30)], ("HR@10",))
  assert row["epochs"] == 40.0 and row["best_epoch"] == 25.0
  header = {"name": "t", "command": "c", "date": "d", "commit": "x",
            "machine": "m"}
  table = results.to_markdown(header, [row])
  assert "| seeds | epochs | best epoch | train s |" in table
  assert "| 2 | 40 | 25 | 1.0 |" in table
  # A run without a validation choice (or an older record): no mean.
  (row,) = results.aggregate([run(0, 20), run(1, None)], ("HR@10",))
  assert "best_epoch" not in row
  assert "best epoch" not in results.to_markdown(header, [row])


def test_valid_rows_summarise_the_chosen_epochs_validation_figures():
  def run(seed):
    result = {"protocol": "p", "train_seconds": 1.0, "epochs": 4,
              "test": {"p/HR@10": 0.5 + seed / 10, "full/HR@10": 0.1},
              "valid": {"p/HR@10": 0.7 + seed / 10}}
    return {"model": "M", "variant": "v", "dataset": "d", "seed": seed,
            "paper": {"p": {"HR@10": 0.6}}, "result": result}

  runs = [run(0), run(1)]
  assert [r["protocol"] for r in results.aggregate(runs, ("HR@10",))] == [
      "p", "full"]
  rows = results.aggregate(runs, ("HR@10",), roles=("test", "valid"))
  assert [r["protocol"] for r in rows] == ["p", "full", "p (valid)"]
  assert [r["role"] for r in rows] == ["test", "test", "valid"]
  test, _, valid = rows
  assert np.isclose(test["metrics"]["HR@10"]["mean"], 0.55)
  assert np.isclose(valid["metrics"]["HR@10"]["mean"], 0.75)
  assert test["paper"] == {"HR@10": 0.6} and valid["paper"] == {}
  # No per-user validation values: the valid rows get no p-value.
  tested = results.significance(runs, rows, ("HR@10",))
  assert "significance" not in tested[2]


def test_read_json_round_trips_and_names_where_a_file_breaks(tmp_path):
  path = tmp_path / "results.json"
  records.write_json(path, {"a": [1, 2.5], "b": "x"})
  assert records.read_json(path) == {"a": [1, 2.5], "b": "x"}
  path.write_text('{\n  "a": 1,\n  "b": \n}\n')     # a value is missing
  with pytest.raises(ValueError, match=r"results\.json:4:1: expected JSON"):
    records.read_json(path)
  assert path.read_text() == '{\n  "a": 1,\n  "b": \n}\n'  # left as it was
