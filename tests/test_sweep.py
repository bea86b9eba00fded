"""The sweep runner and the results tables it writes."""

import json

import numpy as np

from experiments import sweep
from experiments.configs.base import base_config
from jaxrec import results


def test_sweep_runs_aggregates_over_seeds_and_writes_tables(tmp_path):
  config = base_config()
  config.data.synthetic.update(n_users=120, n_items=60, per_user=12)
  config.train.update(epochs=2, batch_size=128, log_every_steps=100)
  config.eval.n_negatives = 20
  entries = [dict(model=m, variant="v", seed=s, overrides=o)
             for m, o in (("Pop", {"model.name": "popularity"}),
                          ("MF", {"model.dim": 8}))
             for s in (0, 1)]
  runs = sweep.run_sweep(config, entries, tmp_path / "runs")
  # Both models shared one frozen negatives file.
  assert len(list((tmp_path / "runs/eval_negatives").glob("*.npz"))) == 1
  rows = results.aggregate(runs, ("HR@10", "NDCG@10"))
  assert [(r["model"], r["protocol"]) for r in rows] == [
      ("Pop", "sampled-uniform-20"), ("Pop", "full"),
      ("MF", "sampled-uniform-20"), ("MF", "full")]
  mf_full = rows[3]
  values = [r["result"]["test"]["full/NDCG@10"] for r in runs[2:]]
  assert mf_full["seeds"] == 2
  assert np.isclose(mf_full["metrics"]["NDCG@10"]["mean"], np.mean(values))
  assert np.isclose(mf_full["metrics"]["NDCG@10"]["std"],
                    np.std(values, ddof=1))
  assert values[0] != values[1]  # seeds differ, so std is informative
  # A rerun reuses finished runs instead of training again.
  again = sweep.run_sweep(config, entries, tmp_path / "runs")
  assert again[2]["result"] == runs[2]["result"]

  json_path, md_path = results.write("t", rows, "python -m x", tmp_path)
  table = json.loads(json_path.read_text())
  assert table["command"] == "python -m x" and table["machine"]
  assert table["commit"] and table["date"] and len(table["rows"]) == 4
  text = md_path.read_text()
  assert "python -m x" in text and "| MF | v | full |" in text
