"""NeuMF-pre before its first step, read as an ensemble of its two halves.

  JAXREC_DATA_DIR=../shared/data python scripts/ncf_ensembles.py \
      --root=runs/ncf_rows --variant='factors=64,row-adam,paper-init' \
      --name=ncf_ml1m_ensembles

NeuMF built from pretrained GMF and MLP-3 with alpha = 0.5 (paper §3.4.1)
scores the mean of its halves' logits, so until fine-tuning moves it, it is
a two-model ensemble.  For the sweep runs '<model>-<variant>-seed<N>' under
--root this script trains nothing; it scores, on validation and test:

  - each half alone (checked against the run's own results.json);
  - the mean logits of every GMF x MLP-3 pair: of the same seed (NeuMF-pre at
    step 0) and of different seeds (halves that saw different negatives and
    batch orders: the authors trained them in separate processes);
  - GMF + GMF and MLP-3 + MLP-3 pairs of different seeds (what any two-model
    ensemble of those runs gains);

and sets the fine-tuned NeuMF-pre runs' own figures beside them.  Writes
results/<name>.md and .json, one table per --variant.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrec import evaluate, results  # noqa: E402
from jaxrec.train import loop, records, setup  # noqa: E402

HALVES = ("GMF", "MLP-3")
METRICS = ("HR@10", "NDCG@10")
ROLES = ("test", "valid")


def _config(workdir: Path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      records.read_json(workdir / "config.json"))


def _result(workdir: Path) -> dict:
  path = workdir / "results.json"
  if not path.exists():
    raise FileNotFoundError(f"{path}: no results.json; is the run finished?")
  return records.read_json(path)


def mean_logits(members: list[tuple]):
  """A score fn (users (U,), candidates (U, C)) -> (U, C): the mean of the
  members' scores; `members` are (score_fn, params) pairs."""
  fns = [fn for fn, _ in members]

  def score(params, users, candidates):
    return sum(fn(p, users, candidates) for fn, p in zip(fns, params)
               ) / len(fns)

  return jax.tree_util.Partial(score, [p for _, p in members])


def figures(members: list[tuple], sets: dict) -> dict:
  """{'test HR@10': mean over users, ...} of the members' mean logits,
  ranked against each role's sampled candidates."""
  fn, out = mean_logits(members), {}
  for role in ROLES:
    s = sets[role]
    per_user = evaluate.sampled_ranking(fn, s.users, s.candidates(),
                                        ks=(10,))
    out.update({f"{role} {m}": float(np.mean(per_user[m])) for m in METRICS})
  return out


def _run_figures(result: dict) -> dict:
  """A finished run's own figures, keyed as `figures` keys them."""
  p = result["protocol"]
  return {f"{role} {m}": result[role][f"{p}/{m}"] for role in ROLES
          for m in METRICS}


def _row(model: str, variant: str, protocol: str, members: list[dict]
         ) -> dict:
  return {"model": model, "variant": variant, "protocol": protocol,
          "metrics": {k: results.seed_stats([f[k] for f in members])
                      for k in members[0]},
          "seeds": len(members)}


def variant_table(root: Path, variant: str, seeds: list[int]) -> dict:
  """{'rows': table rows, 'pairs': {label: figures}} of one variant."""
  wd = {(m, s): root / f"{m}-{variant}-seed{s}" for m in HALVES
        for s in seeds}
  first = wd[(HALVES[0], seeds[0])]
  split, sets, protocol, digest = loop.prepare_data(_config(first), first)
  nu, ni = split.train.n_users, split.train.n_items
  halves, pairs = {}, {}
  for key, path in wd.items():
    own = _result(path)
    if own["negatives_sha256"] != digest:
      raise ValueError(f"{path} was evaluated on other negatives "
                       f"({own['negatives_sha256'][:12]}, not {digest[:12]})")
    model = setup.build_model(_config(path).model, nu, ni)
    halves[key] = (setup.score_fn(model),
                   setup.pretrained_params(path, nu, ni))
    pairs[f"{key[0]}-s{key[1]}"] = got = figures([halves[key]], sets)
    want = _run_figures(own)
    if any(abs(got[k] - want[k]) > 1e-6 for k in want):
      raise ValueError(f"{path}: rescored {got}, but its results.json has "
                       f"{want}; the sets or parameters differ")

  def pair(a, b):
    label = f"{a[0]}-s{a[1]}+{b[0]}-s{b[1]}"
    pairs[label] = figures([halves[a], halves[b]], sets)
    return pairs[label]

  same = [pair(("GMF", s), ("MLP-3", s)) for s in seeds]
  cross = [pair(("GMF", s), ("MLP-3", t))
           for s, t in itertools.product(seeds, seeds) if s != t]
  rows = [_row(m, variant, protocol, [pairs[f"{m}-s{s}"] for s in seeds])
          for m in HALVES]
  rows += [_row("NeuMF-pre at step 0 (GMF + MLP-3, same seed)", variant,
                protocol, same)]
  if cross:
    rows += [_row("GMF + MLP-3, different seeds", variant, protocol, cross)]
  for m in HALVES:
    twins = [pair((m, s), (m, t)) for s, t in itertools.combinations(seeds, 2)]
    if twins:
      rows += [_row(f"{m} + {m}, different seeds", variant, protocol, twins)]
  tuned = [root / f"NeuMF-pre-{variant}-seed{s}" for s in seeds]
  if all((p / "results.json").exists() for p in tuned):
    rows += [_row("NeuMF-pre, fine-tuned (the runs' own figures)", variant,
                  protocol, [_run_figures(_result(p)) for p in tuned])]
  return {"rows": rows, "pairs": pairs}


def define_flags():
  """Defined only when run as a script (the tests import this module)."""
  flags.DEFINE_string("root", None, "The sweep's workdir.", required=True)
  flags.DEFINE_multi_string("variant", [], "Sweep variant of the runs "
                            "'<model>-<variant>-seed<N>'; one table each.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every variant.")
  flags.DEFINE_string("name", None, "Table name.", required=True)
  flags.DEFINE_string("results_dir", "results", "Table directory.")
  flags.DEFINE_string("note", "", "Text above the tables.")


def main(argv):
  del argv
  f = flags.FLAGS
  seeds = [int(s) for s in f.seeds]
  tables = {v: variant_table(Path(f.root), v, seeds) for v in f.variant}
  rows = [row for t in tables.values() for row in t["rows"]]
  json_path, _ = results.write(f.name, rows, results.command_line(),
                               f.results_dir, notes=f.note)
  data = records.read_json(json_path)
  data["pairs"] = {v: t["pairs"] for v, t in tables.items()}
  records.write_json(json_path, data)
  print(json_path.with_suffix(".md").read_text())


if __name__ == "__main__":
  define_flags()
  app.run(main)
