"""scripts/ncf_ensembles.py: NeuMF-pre at step 0 scored as its halves' mean."""

import json
from pathlib import Path

import pytest
from ml_collections import ConfigDict

from experiments.configs.base import base_config
from jaxrec.train.loop import train_and_evaluate
from scripts import ncf_ensembles

VARIANT = "tiny"


def _config(model: dict, seed: int) -> ConfigDict:
  c = base_config()
  c.seed = seed
  c.data.synthetic.update(n_users=60, n_items=40, per_user=8)
  c.model = ConfigDict(model)
  c.train.update(epochs=2, batch_size=64)
  c.eval.n_negatives = 10
  return c


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  """GMF, MLP-3 and NeuMF-pre runs of seeds 0 and 1 in a sweep's layout;
  NeuMF-pre with learning rate 0, so its figures are those of step 0."""
  root = tmp_path_factory.mktemp("sweep")
  halves = {"GMF": {"name": "gmf", "factors": 4},
            "MLP-3": {"name": "mlp", "factors": 4, "layers": 3}}
  for seed in (0, 1):
    run = {m: root / f"{m}-{VARIANT}-seed{seed}" for m in halves}
    for m, model in halves.items():
      train_and_evaluate(_config(model, seed), run[m])
    c = _config({"name": "neumf", "factors": 4, "layers": 3, "pretrained": {
        "gmf": str(run["GMF"]), "mlp": str(run["MLP-3"]), "alpha": 0.5}},
                seed)
    c.optim.update(name="sgd", learning_rate=0.0)
    train_and_evaluate(c, root / f"NeuMF-pre-{VARIANT}-seed{seed}")
  return root


def _rows(table):
  return {r["model"]: r for r in table["rows"]}


def test_step_0_pairs_equal_the_neumf_pre_runs_and_halves_rescore(sweep):
  table = ncf_ensembles.variant_table(sweep, VARIANT, [0, 1])
  rows = _rows(table)
  step0 = rows["NeuMF-pre at step 0 (GMF + MLP-3, same seed)"]["metrics"]
  tuned = rows["NeuMF-pre, fine-tuned (the runs' own figures)"]["metrics"]
  for key in ("test HR@10", "test NDCG@10", "valid HR@10", "valid NDCG@10"):
    assert step0[key]["mean"] == pytest.approx(tuned[key]["mean"], abs=1e-6)
    assert step0[key]["std"] == pytest.approx(tuned[key]["std"], abs=1e-6)
  # Two seeds: two cross pairs, one pair of each half with itself.
  assert rows["GMF + MLP-3, different seeds"]["seeds"] == 2
  assert rows["GMF + GMF, different seeds"]["seeds"] == 1
  assert set(table["pairs"]) >= {"GMF-s0+MLP-3-s1", "GMF-s1+MLP-3-s0",
                                 "MLP-3-s0+MLP-3-s1", "GMF-s0"}
  # An ensemble of two different models is not either of them.
  assert table["pairs"]["GMF-s0+GMF-s1"] != table["pairs"]["GMF-s0"]


def _edit_result(run: Path, edit):
  path = run / "results.json"
  saved = path.read_text()
  result = json.loads(saved)
  edit(result)
  path.write_text(json.dumps(result))
  return lambda: path.write_text(saved)


@pytest.mark.parametrize("edit,match", [
    (lambda r: r.update(negatives_sha256="0" * 64), "other negatives"),
    (lambda r: r["test"].update({
        f"{r['protocol']}/HR@10": r["test"][f"{r['protocol']}/HR@10"] + 0.1}),
     "rescored"),
])
def test_runs_scored_on_other_sets_are_refused(sweep, edit, match):
  restore = _edit_result(sweep / f"MLP-3-{VARIANT}-seed1", edit)
  try:
    with pytest.raises(ValueError, match=match):
      ncf_ensembles.variant_table(sweep, VARIANT, [0, 1])
  finally:
    restore()


def test_a_missing_run_names_its_path(sweep):
  with pytest.raises(FileNotFoundError, match="GMF-tiny-seed7"):
    ncf_ensembles.variant_table(sweep, VARIANT, [0, 7])
