"""scripts/summarise_test_trace.py: our reading and the best-test reading."""

import json

import pytest

from jaxrec.train import records
from scripts import summarise_test_trace as summarise

P = "ncf-sampled-99"


def _run(root, name, chosen_epoch, trace):
  """A finished run: test read on `chosen_epoch`; trace = [(HR, NDCG)]."""
  workdir = root / name
  workdir.mkdir(parents=True)
  log = records.MetricsLog(workdir)
  for epoch, (hr, ndcg) in enumerate(trace, start=1):
    log.write({"step": epoch, "epoch": epoch, "kind": "valid",
               f"{P}/HR@10": 0.9})
    log.write({"step": epoch, "epoch": epoch, "kind": "test_trace",
               f"{P}/HR@10": hr, f"{P}/NDCG@10": ndcg, f"{P}/MRR": ndcg})
  hr, ndcg = trace[chosen_epoch - 1]
  (workdir / "results.json").write_text(json.dumps({
      "protocol": P, "dataset": "ncf-ml1m", "epochs": len(trace),
      "best_epoch": chosen_epoch,
      "test": {f"{P}/HR@10": hr, f"{P}/NDCG@10": ndcg, f"{P}/MRR": ndcg}}))


def _sweep():
  paper = {P: {"HR@10": 0.73, "NDCG@10": 0.447}}
  return [dict(model="NeuMF-pre", variant="factors=64,test-trace", seed=s,
               paper=paper) for s in (0, 1, 2)] + [
      dict(model="GMF", variant="factors=64", seed=0)]


def test_two_readings_take_the_chosen_and_the_best_test_epoch(tmp_path):
  _run(tmp_path, "NeuMF-pre-factors=64,test-trace-seed0", 2,
       [(0.70, 0.42), (0.71, 0.43), (0.72, 0.41), (0.72, 0.44)])
  _run(tmp_path, "NeuMF-pre-factors=64,test-trace-seed1", 1,
       [(0.70, 0.44), (0.74, 0.45)])
  _run(tmp_path, "GMF-factors=64-seed0", 1, [(0.5, 0.3)])  # not matched
  runs, missing = summarise.traced_runs(_sweep(), tmp_path, "test-trace")
  assert missing == ["NeuMF-pre-factors=64,test-trace-seed2"]
  ours, leaky = summarise.two_readings(runs)
  assert ours["protocol"] == P and leaky["protocol"] == P + summarise.LEAKY
  assert ours["metrics"]["HR@10"]["mean"] == pytest.approx((0.71 + 0.70) / 2)
  assert ours["best_epoch"] == 1.5 and ours["seeds"] == 2
  # Seed 0's best test HR is tied at epochs 3 and 4: the earliest is kept,
  # and its NDCG (0.41) comes along, not the tie's better 0.44.
  assert leaky["metrics"]["HR@10"]["mean"] == pytest.approx((0.72 + 0.74) / 2)
  assert leaky["metrics"]["NDCG@10"]["mean"] == pytest.approx(
      (0.41 + 0.45) / 2)
  assert leaky["best_epoch"] == 2.5
  assert ours["paper"] == {"HR@10": 0.73, "NDCG@10": 0.447}
  assert summarise.gaps([ours])[0].endswith("HR@10: 0.7050 vs 0.730 (-0.0250)")


def test_a_finished_run_without_a_trace_is_named(tmp_path):
  _run(tmp_path, "GMF-factors=64-seed0", 1, [(0.5, 0.3)])
  (tmp_path / "GMF-factors=64-seed0/metrics.jsonl").write_text("")
  with pytest.raises(ValueError, match="GMF-factors=64-seed0.*trace_test"):
    summarise.traced_runs(_sweep(), tmp_path, "GMF")
