"""scripts/compare_runs.py: rows from run directories of separate sweeps."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from scripts import compare_runs

KEY = "test/p/HR@10"


def _run(path: Path, hits: np.ndarray, digest="abc"):
  """A finished run: results.json and per_user.npz."""
  path.mkdir(parents=True)
  (path / "results.json").write_text(json.dumps({
      "dataset": "d", "protocol": "p", "negatives_sha256": digest,
      "test": {"p/HR@10": float(hits.mean())}, "train_seconds": 1.0,
      "epochs": 2}))
  np.savez(path / "per_user.npz", **{KEY: hits,
                                     "test/users": np.arange(hits.size)})


def test_rows_pool_seeds_and_pair_users_against_the_reference(tmp_path):
  rng = np.random.default_rng(0)
  a = [rng.random(50) < 0.5 for _ in range(2)]
  b = [rng.random(50) < 0.7 for _ in range(3)]
  for i, h in enumerate(a):
    _run(tmp_path / "sweep1" / f"A-seed{i}", h.astype(float))
  for i, h in enumerate(b):
    _run(tmp_path / "sweep2" / f"B-seed{i}", h.astype(float))
  _run(tmp_path / "sweep2" / "B-unfinished", np.ones(50))
  (tmp_path / "sweep2" / "B-unfinished" / "results.json").unlink()
  rows = compare_runs.compare(
      [f"A|x|{tmp_path}/sweep1/A-seed*", f"B|y|{tmp_path}/sweep2/B-*"],
      ("HR@10",), reference="A|x")
  by = {r["model"]: r for r in rows}
  assert by["B"]["seeds"] == 3
  means = [h.mean() for h in b]
  assert by["B"]["metrics"]["HR@10"]["mean"] == pytest.approx(np.mean(means))
  assert by["B"]["metrics"]["HR@10"]["std"] == pytest.approx(
      np.std(means, ddof=1))
  assert by["A"]["significance"]["HR@10"]["reference"] is None
  expected = stats.ttest_rel(np.mean(b, 0), np.mean(a, 0)).pvalue
  assert by["B"]["significance"]["HR@10"]["p"] == pytest.approx(expected)


def test_refuses_runs_on_other_negatives_and_empty_groups(tmp_path):
  _run(tmp_path / "A-seed0", np.ones(10), digest="abc")
  _run(tmp_path / "B-seed0", np.zeros(10), digest="def")
  with pytest.raises(ValueError, match="different evaluation negatives"):
    compare_runs.compare([f"A|x|{tmp_path}/A-*", f"B|y|{tmp_path}/B-*"],
                         ("HR@10",))
  with pytest.raises(ValueError, match="no directory matching"):
    compare_runs.compare([f"C|z|{tmp_path}/C-*"], ("HR@10",))
  malformed = re.escape("expected 'MODEL|VARIANT|GLOB'")
  with pytest.raises(ValueError, match=malformed):
    compare_runs.compare(["C|z"], ("HR@10",))


def test_a_corrupt_results_file_is_named(tmp_path):
  _run(tmp_path / "A-seed0", np.ones(5))
  (tmp_path / "A-seed0" / "results.json").write_text('{"dataset": ')
  with pytest.raises(ValueError, match=r"A-seed0/results\.json:1:13"):
    compare_runs.load_group(f"A|v|{tmp_path}/A-seed*")
