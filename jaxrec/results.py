"""Result tables (`results/<name>.md` + `.json`) built from run records.

A row is one (model, variant, protocol) with mean and standard deviation of
each metric over seeds; the files name the command, date, commit and machine
so that anyone can rerun them (SPEC §5).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from jaxrec.train import records


def aggregate(runs: list[dict], metrics: tuple[str, ...]) -> list[dict]:
  """Groups runs by (model, variant) and summarises test metrics per protocol.

  Args:
    runs: dicts with 'model', 'variant', 'dataset', 'seed' and 'result' (the
      results.json of one run: protocol label, 'test' metrics keyed
      '<protocol>/<metric>', 'train_seconds', 'epochs').
    metrics: metric names to keep, e.g. ('HR@10', 'NDCG@10').

  Returns:
    SPEC §5 rows, in the order the groups first appear.
  """
  groups: dict[tuple, list[dict]] = {}
  for run in runs:
    groups.setdefault((run["model"], run["variant"]), []).append(run)
  rows = []
  for (model, variant), members in groups.items():
    first = members[0]
    labels = {k.split("/")[0] for k in first["result"]["test"]}
    for protocol in [p for p in (first["result"]["protocol"], "full")
                     if p in labels]:
      stats = {}
      for m in metrics:
        values = [r["result"]["test"].get(f"{protocol}/{m}") for r in members]
        if any(v is None for v in values):
          continue
        stats[m] = {"mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1
                    else 0.0}
      rows.append({
          "model": model, "variant": variant, "dataset": first["dataset"],
          "protocol": protocol, "metrics": stats,
          "paper": first.get("paper", {}).get(protocol, {}),
          "seeds": len(members),
          "epochs": float(np.mean([r["result"].get("epochs", 0)
                                   for r in members])),
          "train_seconds": float(np.mean([r["result"]["train_seconds"]
                                          for r in members]))})
  return rows


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
      ("train_seconds", "train s", "{:.1f}"))
           if any(key in row for row in rows)]
  cols = ["model", "variant", "protocol"] + names + [e[1] for e in extra]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for row in rows:
    cells = [row["model"], row["variant"], row["protocol"]]
    for m in names:
      stat, paper = row["metrics"].get(m), row.get("paper", {}).get(m)
      cells.append(_cell(stat) + (f" (paper {paper:.4f})" if paper else ""))
    cells += [fmt.format(row[key]) if key in row else "-"
              for key, _, fmt in extra]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def _cell(stat: dict | None) -> str:
  """'0.7310 ± 0.0020' (4 decimals below 10, else whole numbers); no
  '±' when the spread rounds to 0 (one measurement, or deterministic)."""
  if not stat:
    return "-"
  mean, std = stat["mean"], stat["std"]
  if abs(mean) >= 10:
    return f"{mean:,.0f}" + (f" ± {std:,.0f}" if round(std) else "")
  return f"{mean:.4f}" + (f" ± {std:.4f}" if round(std, 4) else "")
