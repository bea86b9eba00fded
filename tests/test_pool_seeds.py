"""scripts/pool_seeds.py: one row from rows over disjoint seeds in several
results files."""

import json
from pathlib import Path

import numpy as np
import pytest

from scripts import pool_seeds


def _file(path: Path, variant: str, by_protocol: dict[str, np.ndarray]):
  """A results file with one row per protocol of HR@10 over the given
  per-seed values."""
  path.write_text(json.dumps({"rows": [
      {"model": "M", "variant": variant, "protocol": p, "seeds": len(v),
       "epochs": 5.0, "train_seconds": 100.0 * len(v), "paper": {},
       "metrics": {"HR@10": {"mean": float(v.mean()), "std": float(
           v.std(ddof=1)) if len(v) > 1 else 0.0}}}
      for p, v in by_protocol.items()] + [
      {"model": "Other", "variant": variant, "protocol": "p", "seeds": 1,
       "metrics": {"HR@10": {"mean": 9.0, "std": 0.0}}}]}))


def test_rows_of_one_label_pool_per_protocol(tmp_path):
  seed0 = {"p": np.array([0.30]), "full": np.array([0.04])}
  seeds12 = {"p": np.array([0.32, 0.31]), "full": np.array([0.05, 0.03])}
  _file(tmp_path / "a.json", "selected", seed0)
  _file(tmp_path / "b.json", "fixed", seeds12)
  rows = pool_seeds.pooled_rows([f"refit|{tmp_path}/a.json|M|selected",
                                 f"refit|{tmp_path}/b.json|M|fixed"])
  assert [(r["variant"], r["protocol"]) for r in rows] == [
      ("refit", "p"), ("refit", "full")]
  for row in rows:
    values = np.concatenate([seed0[row["protocol"]],
                             seeds12[row["protocol"]]])
    assert row["seeds"] == 3 and row["source"] == "a, b"
    assert row["metrics"]["HR@10"]["mean"] == pytest.approx(values.mean())
    assert row["metrics"]["HR@10"]["std"] == pytest.approx(
        values.std(ddof=1))
    assert row["epochs"] == 5.0 and "train_seconds" not in row


@pytest.mark.parametrize("bad", ["refit|x.json|M", "refit||M|v"])
def test_malformed_specs_are_refused(bad):
  with pytest.raises(ValueError, match="LABEL\\|FILE\\|MODEL\\|VARIANT"):
    pool_seeds.load_rows(bad)


def test_a_spec_naming_no_row_is_refused(tmp_path):
  _file(tmp_path / "a.json", "selected", {"p": np.array([0.3])})
  with pytest.raises(ValueError, match="no row of model 'M' and variant"):
    pool_seeds.load_rows(f"x|{tmp_path}/a.json|M|missing")
