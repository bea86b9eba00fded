"""Result tables (`results/<name>.md` + `.json`) built from run records.

A row is one (model, variant, protocol) with mean and standard deviation of
each metric over seeds; the files name the command, date, commit and machine
so that anyone can rerun them (SPEC §5).  `significance` adds, per
protocol and metric, a paired test of each row against a reference row on
the runs' per-user metrics (`per_user.npz`).
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from jaxrec import abtest
from jaxrec.train import records


def aggregate(runs: list[dict], metrics: tuple[str, ...],
              roles: tuple[str, ...] = ("test",)) -> list[dict]:
  """Groups runs by (model, variant) and summarises metrics per protocol.

  Args:
    runs: dicts with 'model', 'variant', 'dataset', 'seed' and 'result' (the
      results.json of one run: protocol label, 'test' metrics keyed
      '<protocol>/<metric>', 'train_seconds', 'epochs' (trained) and, where
      recorded, 'best_epoch' (chosen on validation)).
    metrics: metric names to keep, e.g. ('HR@10', 'NDCG@10').
    roles: which of results.json's metric sets to summarise: 'test', and
      'valid' (the chosen epoch's validation figures, the ones that chose
      it; their rows' protocol reads '<protocol> (valid)', with no paper
      figure).  Each row names its set in 'role'.

  Returns:
    SPEC §5 rows, in the order the groups first appear.
  """
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault((run["model"], run["variant"]), []).append(run)
  rows = []
  for (model, variant), members in groups.items():
    first = members[0]
    for role in roles:
      labels = {k.split("/")[0] for k in first["result"].get(role, {})}
      for protocol in [p for p in (first["result"]["protocol"], "full")
                       if p in labels]:
        rows.append(_row(model, variant, members, role, protocol, metrics))
  return rows


def _row(model: str, variant: str, members: list[dict], role: str,
         protocol: str, metrics: tuple[str, ...]) -> dict:
  """One aggregate row: `role`'s metrics under `protocol` over `members`."""
  first = members[0]
  stats = {}
  for m in metrics:
    values = [r["result"].get(role, {}).get(f"{protocol}/{m}")
              for r in members]
    if all(v is not None for v in values):
      stats[m] = seed_stats(values)
  test = role == "test"
  return {"model": model, "variant": variant, "dataset": first["dataset"],
          "role": role,
          "protocol": protocol if test else f"{protocol} ({role})",
          "metrics": stats,
          "paper": first.get("paper", {}).get(protocol, {}) if test else {},
          "seeds": len(members),
          "epochs": float(np.mean([r["result"].get("epochs", 0)
                                   for r in members])),
          "train_seconds": float(np.mean([r["result"]["train_seconds"]
                                          for r in members])),
          **_mean_best_epoch(members)}


def seed_stats(values: list[float]) -> dict:
  """{'mean', 'std'} of one metric over seeds (std with ddof 1; 0 for a
  single seed)."""
  return {"mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def _mean_best_epoch(members: list[dict]) -> dict:
  """{'best_epoch': the mean over runs of the epoch chosen on validation},
  or {} when a run has none (no validation, or written before the runs
  recorded it)."""
  best = [r["result"].get("best_epoch") for r in members]
  if any(b is None for b in best):
    return {}
  return {"best_epoch": float(np.mean(best))}


def pool(rows: list[dict], **fields) -> dict:
  """One row from rows of the same (model, protocol) over disjoint seeds.

  Each metric's mean and standard deviation (ddof 1) are those of all the
  seeds' values together, recovered exactly from each row's mean, std and
  seed count.  Only metrics every row has are kept; 'epochs', 'best_epoch'
  and 'train_seconds' only where every row has the same (budgets and timings
  stay with their sources).  `fields` (e.g. variant) override.
  """
  n = np.array([r["seeds"] for r in rows], float)
  total = n.sum()
  stats = {}
  for m in [m for m in rows[0]["metrics"] if all(m in r["metrics"]
                                                 for r in rows)]:
    mean = np.array([r["metrics"][m]["mean"] for r in rows])
    std = np.array([r["metrics"][m]["std"] for r in rows])
    grand = float(n @ mean / total)
    squares = ((n - 1) * std**2).sum() + (n * (mean - grand)**2).sum()
    stats[m] = {"mean": grand, "std": float(np.sqrt(squares / (total - 1)))
                if total > 1 else 0.0}
  differ = {k for k in ("epochs", "best_epoch", "train_seconds")
            if any(r.get(k) != rows[0].get(k) for r in rows)}
  return {**{k: v for k, v in rows[0].items()
             if k not in differ | {"significance"}},
          "metrics": stats, "seeds": int(total), **fields}


def significance(runs: list[dict], rows: list[dict],
                 metrics: tuple[str, ...], *,
                 reference: tuple[str, str] | None = None,
                 test: str = "paired-t", role: str = "test") -> list[dict]:
  """Rows of `aggregate`, each metric tested against a reference row.

  For each protocol and metric, every row's per-user values (the mean over
  its seeds, from each run's `<workdir>/per_user.npz`) are compared with
  the reference row's by a paired test (`abtest.PAIRED_TESTS`).  The
  reference is `reference` = (model, variant) if it has the protocol, else
  the best row that can be tested (highest mean; lowest for a metric named
  '*loss*').  A group with a run lacking `workdir`, the file or the key
  gets no test.

  Returns:
    Copies of `rows`; a tested row gets `significance[metric]` =
    {'test', 'reference' ('model variant'), 'p', 'diff' (row - reference,
    the mean per-user difference), 'ci' (of diff, or None)}, and the
    reference row {'test', 'reference': None}.

  Raises:
    ValueError: two runs were evaluated on different users (their per-user
      lengths, negatives digests or stored user ids differ).
  """
  if test not in abtest.PAIRED_TESTS:
    raise ValueError(f"test={test!r}; expected one of "
                     f"{sorted(abtest.PAIRED_TESTS)}")
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault((run["model"], run["variant"]), []).append(run)
  rows = [{**row, "significance": {}} for row in rows]
  for protocol in dict.fromkeys(row["protocol"] for row in rows):
    members = [r for r in rows if r["protocol"] == protocol]
    for m in metrics:
      have = [r for r in members if m in r["metrics"]]
      key = f"{role}/{protocol}/{m}"
      loaded = {id(r): _load(groups[(r["model"], r["variant"])], key, role)
                for r in have}
      _check_same_users([x for runs_ in loaded.values() if runs_
                         for x in runs_], key)
      # Seeds pooled: the per-user mean over a row's runs.
      values = {k: None if v is None else np.mean([x[1] for x in v], axis=0)
                for k, v in loaded.items()}
      testable = [r for r in have if values[id(r)] is not None]
      ref = _reference(have, testable, m, reference)
      if ref is None or values[id(ref)] is None:
        continue
      others = [r for r in testable if r is not ref]
      if others:
        ref["significance"][m] = {"test": test, "reference": None}
      for row in others:
        res = abtest.PAIRED_TESTS[test](values[id(ref)], values[id(row)])
        row["significance"][m] = {
            "test": test, "reference": f"{ref['model']} {ref['variant']}",
            "p": float(res.p_value), "diff": float(res.estimate),
            "ci": None if res.ci is None else [float(x) for x in res.ci]}
  for row in rows:
    if not row["significance"]:
      del row["significance"]
  return rows


def _reference(rows: list[dict], testable: list[dict], metric: str,
               named: tuple[str, str] | None) -> dict | None:
  """The named row if `rows` has it, else the best of `testable`."""
  for row in rows:
    if named and (row["model"], row["variant"]) == tuple(named):
      return row
  if not testable:
    return None
  sign = -1 if "loss" in metric.lower() else 1
  return max(testable, key=lambda r: sign * r["metrics"][metric]["mean"])


def _load(runs: list[dict], key: str, role: str) -> list[tuple] | None:
  """[(run, (U,) values, (U,) user ids or None)] for each run, or None if
  any run lacks its workdir, per_user.npz or `key`."""
  loaded = []
  for run in runs:
    path = Path(run.get("workdir", "")) / "per_user.npz"
    if "workdir" not in run or not path.exists():
      return None
    with np.load(path) as f:
      if key not in f:
        return None
      users_key = next((k for k in (key.rsplit("/", 1)[0] + "/users",
                                    f"{role}/users") if k in f), None)
      loaded.append((run, f[key].astype(np.float64),
                     f[users_key] if users_key else None))
  return loaded


def _check_same_users(loaded: list[tuple], key: str):
  """Every run in `loaded` scored the same users in the same order."""
  if not loaded:
    return
  first, v0, users0 = loaded[0]
  for run, v, users in loaded[1:]:
    problems = []
    if len(v) != len(v0):
      problems.append(f"{len(v)} users vs {len(v0)}")
    digests = [r["result"].get("negatives_sha256") for r in (run, first)]
    if None not in digests and digests[0] != digests[1]:
      problems.append("different evaluation negatives (sha256 "
                      f"{digests[0][:12]} vs {digests[1][:12]})")
    if (users is not None and users0 is not None
        and not np.array_equal(users, users0)):
      problems.append("different user ids or order")
    if problems:
      raise ValueError(
          f"per_user.npz of {run['workdir']} and {first['workdir']} cannot "
          f"be paired on {key!r}: {'; '.join(problems)}; expected the same "
          "users in the same order")


def command_line(argv: list[str] | None = None, module: str | None = None,
                 env: tuple[str, ...] = ("JAXREC_DATA_DIR",)) -> str:
  """The shell command that reruns this process, for a table's header.

  The variables of `env` that are set come first (`NAME=value`), then
  `python -m module` (or `python argv[0]`) and argv[1:], each word quoted.
  """
  argv = list(sys.argv if argv is None else argv)
  program = ["-m", module] if module else argv[:1]
  words = [f"{k}={shlex.quote(os.environ[k])}" for k in env
           if os.environ.get(k)]
  return " ".join(words + [shlex.quote(w)
                           for w in ["python", *program, *argv[1:]]])


def measured_row(model: str, variant: str, protocol: str, dataset: str,
                 **metrics: float) -> dict:
  """A table row of single measurements (a benchmark's), each metric
  stored as mean = the value, std = 0."""
  return {"model": model, "variant": variant, "protocol": protocol,
          "dataset": dataset,
          "metrics": {k: {"mean": float(v), "std": 0.0}
                      for k, v in metrics.items()}}


def write(name: str, rows: list[dict], command: str, out_dir: str | Path,
          notes: str = "") -> tuple[Path, Path]:
  """Writes `<out_dir>/<name>.json` and `.md`; returns both paths."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  header = {"name": name, "command": command,
            "commit": records.git_commit(short=True),
            "date": datetime.date.today().isoformat(),
            "machine": records.machine()}
  json_path = out_dir / f"{name}.json"
  records.write_json(json_path, {**header, "rows": rows})
  md_path = out_dir / f"{name}.md"
  md_path.write_text(to_markdown(header, rows, notes))
  return json_path, md_path


def to_markdown(header: dict, rows: list[dict], notes: str = "") -> str:
  """The header, the notes, then one table per group of rows that share
  their metric names (e.g. a benchmark's epoch rows and its eval rows)."""
  lines = [f"# {header['name']}", "",
           f"- command: `{header['command']}`",
           f"- date: {header['date']}, commit: {header['commit']}",
           f"- machine: {header['machine']}", ""]
  if notes:
    lines += [notes.strip(), ""]
  groups: dict[tuple, list[dict]] = {}
  for row in rows:
    groups.setdefault(tuple(row["metrics"]), []).append(row)
  for names, group in groups.items():
    lines += _table(list(names), group) + [""]
  return "\n".join(lines)


def _table(names: list[str], rows: list[dict]) -> list[str]:
  extra = [(key, label, fmt) for key, label, fmt in (
      ("seeds", "seeds", "{:d}"), ("epochs", "epochs", "{:.0f}"),
      ("best_epoch", "best epoch", "{:.0f}"),
      ("train_seconds", "train s", "{:.1f}"))
           if any(key in row for row in rows)]
  cols = ["model", "variant", "protocol"] + names + [e[1] for e in extra]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for row in rows:
    cells = [row["model"], row["variant"], row["protocol"]]
    for m in names:
      stat, paper = row["metrics"].get(m), row.get("paper", {}).get(m)
      cells.append(_cell(stat) + (f" (paper {paper:.4f})" if paper else "")
                   + _mark(row.get("significance", {}).get(m)))
    cells += [fmt.format(row[key]) if key in row else "-"
              for key, _, fmt in extra]
    lines.append("| " + " | ".join(cells) + " |")
  tests = {s["test"] for row in rows
           for s in row.get("significance", {}).values()}
  if tests:
    lines += ["", f"p: two-sided {', '.join(sorted(tests))} test of the "
              "row's per-user test metric (mean over seeds) against the row "
              "marked ref in the same protocol and column: users are the "
              "unit, so seed-to-seed spread is in the ± and not in p; not "
              "corrected for multiple comparisons."]
  return lines


def _mark(sig: dict | None) -> str:
  """' (ref)', ' (p=0.034)', ' (p<0.001)' or ''."""
  if not sig:
    return ""
  if sig["reference"] is None:
    return " (ref)"
  p = sig["p"]
  return " (p<0.001)" if p < 0.001 else f" (p={p:.3f})"


def _cell(stat: dict | None) -> str:
  """'0.7310 ± 0.0020' (4 decimals below 10, else whole numbers); no
  '±' when the spread rounds to 0 (one measurement, or deterministic)."""
  if not stat:
    return "-"
  mean, std = stat["mean"], stat["std"]
  if abs(mean) >= 10:
    return f"{mean:,.0f}" + (f" ± {std:,.0f}" if round(std) else "")
  return f"{mean:.4f}" + (f" ± {std:.4f}" if round(std, 4) else "")
