"""Every experiment config imports, builds, and names real fields."""

import importlib.util
from pathlib import Path

import pytest

from experiments import sweep
from jaxrec.train import families

CONFIGS = sorted(p for p in (Path(__file__).parents[1] / "experiments" /
                             "configs").glob("*.py")
                 if p.name not in ("__init__.py", "base.py"))


def _load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_there_are_configs():
  assert {p.stem for p in CONFIGS} >= {"mf_synthetic", "mf_ml100k"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_documents_its_command(path):
  module = _load(path)
  config = module.get_config()
  assert "python -m experiments." in module.__doc__
  assert config.model.name and config.data.name
  assert config.get("family", "ranking") in families.FAMILIES
  if hasattr(module, "get_sweep"):
    for entry in module.get_sweep():
      assert {"model", "variant", "seed"} <= set(entry)
      # Every override names an existing field (a typo would be silent).
      for dotted in entry.get("overrides", {}):
        node = config
        for key in dotted.split("."):
          assert key in node, f"{path.stem}: unknown field {dotted}"
          node = node[key]
      sweep.apply_overrides(config, entry.get("overrides", {}))
