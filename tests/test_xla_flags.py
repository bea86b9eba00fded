"""XLA flags: the candidate flag is one the installed XLA accepts (an
unknown flag aborts the process), and scripts/bench_xla_flags.py's child
keeps up with the runners it drives."""

import os
import subprocess
import sys

from jaxrec import xla_flags


def test_installed_xla_accepts_the_candidate_flag():
  env = dict(os.environ, XLA_FLAGS=xla_flags.YNN_OFF,
             JAX_PLATFORMS="cpu")
  child = subprocess.run(
      [sys.executable, "-c", "import jax.numpy as jnp; "
       "print(float((jnp.ones((3, 4)) @ jnp.ones((4, 2))).sum()))"],
      env=env, capture_output=True, text=True, timeout=120)
  assert child.returncode == 0, child.stderr[-2000:]
  assert child.stdout.strip() == "24.0"


def test_bench_child_runs_the_benchmarks_runners(monkeypatch):
  """The child process of scripts/bench_xla_flags.py drives seq_steps'
  and bench_ncf's JAX runners (small shapes here; neither needs torch): it
  must keep up with them."""
  from pathlib import Path
  monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]
                                  / "scripts"))
  import bench_xla_flags
  import seq_steps
  monkeypatch.setattr(bench_xla_flags, "WORKLOADS",
                      ("SASRec", "GMF", "BERT4Rec-Beauty"))
  monkeypatch.setitem(seq_steps.SPECS["SASRec"], "batch", 2)
  monkeypatch.setitem(seq_steps.SPECS["SASRec"], "model", {
      **seq_steps.SPECS["SASRec"]["model"], "num_blocks": 1,
      "causal_block": 0, "row_groups": 1})     # compiles in a third the time
  rates = bench_xla_flags.child(repeats=1)
  assert set(rates) == {"SASRec", "GMF", "BERT4Rec-Beauty"}
  assert all(r > 0 for r in rates.values())


def test_describe_names_the_malloc_tunables_only_when_set(monkeypatch):
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  assert "GLIBC_TUNABLES" not in xla_flags.describe()
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
  assert "GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1'" in xla_flags.describe()
