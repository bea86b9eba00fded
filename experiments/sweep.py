"""Runs a config's sweep and writes its results table.

  python -m experiments.sweep --config=experiments/configs/mf_ml100k.py \
      --workdir=runs/mf_ml100k --name=mf_ml100k

The config file defines `get_sweep()`: a list of dicts, each with 'model'
and 'variant' labels (table rows), 'seed', and dotted config overrides under
'overrides'.  Runs whose results.json exists are not repeated, so an
interrupted sweep picks up where it stopped (and each run resumes from its
own checkpoint).  Every run shares one frozen set of evaluation negatives.

Each cell also gets a paired test (`--significance`) of the row against a
reference row on the runs' per-user test metrics, averaged over seeds: the
entry marked `'baseline': True`, or `--baseline`, else the best row of each
protocol and metric.
"""

import importlib.util
import re
from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxrec import checkpoint, results
from jaxrec.train import records
from jaxrec.train.families import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep root.", required=True)
_NAME = flags.DEFINE_string("name", None, "Table name (results/<name>.*).",
                            required=True)
_RESULTS = flags.DEFINE_string("results_dir", "results", "Table directory.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root.")
_ONLY = flags.DEFINE_string(
    "only", None, "Regex: run only the entries whose run name matches "
    "(e.g. 'factors=(8|16)-'); the table then holds just those.")
_NOTE = flags.DEFINE_string(
    "note", "", "Text added under the table's notes (e.g. what is partial).")
_METRICS = flags.DEFINE_list("metrics", ["HR@10", "NDCG@10", "MRR"],
                             "Metrics in the table.")
_ROLES = flags.DEFINE_multi_enum(
    "roles", ["test"], ["test", "valid"],
    "Metric sets in the table: 'valid' adds each row's validation figures "
    "on its chosen epoch (those that chose it), e.g. to read a tuning grid.")
_SIGNIFICANCE = flags.DEFINE_enum(
    "significance", "paired-t", ["paired-t", "wilcoxon", "paired-bootstrap",
                                 "none"],
    "Paired test of each row against the reference row on per-user test "
    "metrics (mean over seeds); 'none' leaves p-values out.")
_BASELINE = flags.DEFINE_string(
    "baseline", None, "Reference row as '<model>-<variant>' (a run name "
    "without '-seed<N>'); default: the sweep entry with 'baseline': True, "
    "else the best row of each protocol and metric.")


def load_sweep(config_path: str) -> tuple[list[dict], str]:
  """`get_sweep()` and the NOTES string of a config file."""
  spec = importlib.util.spec_from_file_location("sweep_config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_sweep(), getattr(module, "NOTES", "")


def apply_overrides(config, overrides: dict, root: str = ""):
  """A copy of `config` with dotted-key overrides; a dict value replaces a
  whole block, and '{root}' in a string value becomes the sweep root (so a
  run can name an earlier run's workdir, e.g. for pre-training)."""
  config = config.copy_and_resolve_references()
  for dotted, value in overrides.items():
    *path, leaf = dotted.split(".")
    node = config
    for key in path:
      node = node[key]
    if isinstance(value, dict):
      value = ml_collections.ConfigDict(value)
    elif isinstance(value, str):
      value = value.replace("{root}", root)
    node[leaf] = value
  return config


def run_name(entry: dict) -> str:
  return f"{entry['model']}-{entry['variant']}-seed{entry['seed']}"


def reference(sweep: list[dict],
              name: str | None = None) -> tuple[str, str] | None:
  """(model, variant) of the row named `name` ('<model>-<variant>') or of
  the entry marked 'baseline'; None (the best row) when neither is."""
  for entry in sweep:
    label = f"{entry['model']}-{entry['variant']}"
    if (label == name) if name else entry.get("baseline"):
      return entry["model"], entry["variant"]
  if name:
    raise ValueError(f"--baseline: no sweep entry named {name!r}; expected "
                     "'<model>-<variant>' of an entry of get_sweep()")
  return None


def run_sweep(config, sweep: list[dict], root: Path,
              only: str | None = None) -> list[dict]:
  runs = []
  for entry in sweep:
    if only and not re.search(only, run_name(entry)):
      continue
    overrides = {"seed": entry["seed"], **entry.get("overrides", {})}
    cfg = apply_overrides(config, overrides, str(root))
    cfg.eval.negatives_dir = str(root / "eval_negatives")
    workdir = root / run_name(entry)
    done = workdir / "results.json"
    if done.exists():
      result = records.read_json(done)
    else:
      logging.info("sweep run %s", workdir.name)
      result = train_and_evaluate(cfg, workdir)
    runs.append({**entry, "dataset": result.get("dataset", ""),
                 "result": result, "workdir": str(workdir)})
  return runs


def main(argv):
  del argv
  checkpoint.quiet_orbax_logs()
  config = _CONFIG.value
  if _DATA_DIR.value:
    config.data.dir = _DATA_DIR.value
  sweep, notes = load_sweep(
      config_flags.get_config_filename(flags.FLAGS["config"]))
  runs = run_sweep(config, sweep, Path(_WORKDIR.value), _ONLY.value)
  rows = results.aggregate(runs, tuple(_METRICS.value), tuple(_ROLES.value))
  if _SIGNIFICANCE.value != "none":
    rows = results.significance(
        runs, rows, tuple(_METRICS.value), test=_SIGNIFICANCE.value,
        reference=reference(sweep, _BASELINE.value))
  command = results.command_line(module="experiments.sweep")
  notes = "\n\n".join(x for x in (notes, _NOTE.value) if x)
  paths = results.write(_NAME.value, rows, command, _RESULTS.value, notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  app.run(main)
