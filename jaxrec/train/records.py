"""What every run leaves in its workdir: config, manifest, metrics.jsonl."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
            "faiss-cpu", "ml_collections", "absl-py")
REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(short: bool = False) -> str:
  """The repository's HEAD commit ('+dirty' when there are local changes
  outside results/, whose tables are outputs, not code), or 'unknown'
  outside a git checkout."""
  try:
    args = ["git", "-C", str(REPO_ROOT), "rev-parse"] + (
        ["--short"] if short else []) + ["HEAD"]
    commit = subprocess.run(args, capture_output=True, text=True,
                            check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain",
         "--untracked-files=no", "--", ".", ":(exclude)results"],
        capture_output=True, text=True, timeout=10).stdout.strip()
    return commit + ("+dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def cpu_detail(cpuinfo: str = "/proc/cpuinfo") -> str:
  """' (model name; widest vector ISA)' from Linux's cpuinfo, e.g.
  ' (Intel(R) Xeon(R) Processor; AVX-512, AMX)', or '' where unreadable:
  two '2-core x86_64' machines can differ several-fold in matmul speed."""
  try:
    text = Path(cpuinfo).read_text()
  except OSError:
    return ""
  model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("model name")), "")
  flags = set(next((line.split(":", 1)[1].split() for line in
                    text.splitlines() if line.startswith("flags")), []))
  isa = next((name for flag, name in (("avx512f", "AVX-512"),
                                      ("avx2", "AVX2"), ("avx", "AVX"))
              if flag in flags), "")
  parts = [p for p in (isa, "AMX" if "amx_tile" in flags else "") if p]
  detail = "; ".join(p for p in (model, ", ".join(parts)) if p)
  return f" ({detail})" if detail else ""


def machine() -> str:
  """One line naming cores, CPU, memory and accelerator, e.g.
  '2-core x86_64 CPU (Intel(R) Xeon(R) Processor; AVX-512, AMX), 24 GiB,
  no accelerator'."""
  try:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    memory = f", {round(pages / 2**30)} GiB"
  except (ValueError, OSError):
    memory = ""
  accel = [d for d in jax.devices() if d.platform != "cpu"]
  accel_text = (f"{len(accel)} x {accel[0].device_kind}" if accel
                else "no accelerator")
  return (f"{os.cpu_count()}-core {platform.machine()} CPU{cpu_detail()}"
          f"{memory}, "
          f"{accel_text}")


def manifest() -> dict:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
      "git_commit": git_commit(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "python": platform.python_version(),
      "packages": versions,
      "machine": machine(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def write_run_header(workdir: Path, config) -> None:
  """Writes config.json and manifest.json (overwritten on resume)."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  (workdir / "manifest.json").write_text(json.dumps(manifest(), indent=2))


class MetricsLog:
  """Appends one JSON object per line to `<workdir>/metrics.jsonl`."""

  def __init__(self, workdir: Path):
    self.path = Path(workdir) / "metrics.jsonl"

  def truncate_after(self, step: int) -> None:
    """Drops records past `step`: a resumed run replays those steps."""
    keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
    if self.path.exists():
      self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                   for r in keep))

  def write(self, record: dict) -> None:
    with self.path.open("a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(path: Path) -> list[dict]:
  """The records of a metrics.jsonl ([] when it does not exist); a line that
  is not a JSON object is an error naming the file and line."""
  path = Path(path)
  if not path.exists():
    return []
  out = []
  for n, line in enumerate(path.read_text().splitlines(), start=1):
    if not line:
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{n}: expected one JSON object per line "
                       f"({e.msg})") from None
    if not isinstance(record, dict):
      raise ValueError(f"{path}:{n}: expected a JSON object, got "
                       f"{type(record).__name__}")
    out.append(record)
  return out


def best_traced_test(workdir: Path, metric: str) -> dict | None:
  """The 'test_trace' record (`eval.trace_test`) of `workdir` with the
  highest `metric`, the earliest on a tie, as NCF's released code keeps its
  best test HR; None when the run traced nothing.  Leaky by construction:
  for comparing with papers that select on test, never for selecting."""
  path = Path(workdir) / "metrics.jsonl"
  traced = [r for r in read_metrics(path) if r.get("kind") == "test_trace"]
  if not traced:
    return None
  if metric not in traced[0]:
    raise KeyError(f"{path}: test_trace records hold {sorted(traced[0])}, "
                   f"not {metric!r}")
  return max(traced, key=lambda r: (r[metric], -r["epoch"]))


def read_json(path: Path):
  """The JSON document in `path`; one that does not parse is an error
  naming the file, line and column."""
  path = Path(path)
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}:{e.colno}: expected JSON "
                     f"({e.msg})") from None


def write_json(path: Path, obj) -> None:
  """Writes JSON atomically (a reader never sees half a file)."""
  tmp = Path(str(path) + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)
