"""The CPU XLA flags: appended once, the user's own setting wins, and the
installed XLA accepts them (an unknown flag aborts the process)."""

import os
import subprocess
import sys

import pytest

from jaxrec import xla_flags

_NAME = xla_flags.CPU_FLAGS[0].split("=")[0]


@pytest.fixture
def tested_release(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_release", lambda: (0, 10))


def test_appends_to_existing_flags_once(tested_release):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_flags.add_cpu_flags(env) == list(xla_flags.CPU_FLAGS)
  assert env["XLA_FLAGS"].split() == [
      "--xla_force_host_platform_device_count=8", *xla_flags.CPU_FLAGS]
  assert xla_flags.add_cpu_flags(env) == []
  assert env["XLA_FLAGS"].count(_NAME) == 1


def test_user_setting_wins(tested_release):
  env = {"XLA_FLAGS": f"{_NAME}=LIBRARY_FUSION_TYPE_DOT"}
  assert xla_flags.add_cpu_flags(env) == []
  assert env["XLA_FLAGS"] == f"{_NAME}=LIBRARY_FUSION_TYPE_DOT"


def test_untested_jaxlib_gets_nothing(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_release", lambda: (9, 99))
  env = {}
  assert xla_flags.add_cpu_flags(env) == []
  assert env == {}


def test_installed_xla_accepts_the_flags():
  if xla_flags._jaxlib_release() not in xla_flags.TESTED_JAXLIB:
    pytest.skip("flags are not added for this jaxlib")
  env = dict(os.environ, XLA_FLAGS=" ".join(xla_flags.CPU_FLAGS),
             JAX_PLATFORMS="cpu")
  child = subprocess.run(
      [sys.executable, "-c", "import jax.numpy as jnp; "
       "print(float((jnp.ones((3, 4)) @ jnp.ones((4, 2))).sum()))"],
      env=env, capture_output=True, text=True, timeout=120)
  assert child.returncode == 0, child.stderr[-2000:]
  assert child.stdout.strip() == "24.0"


def test_bench_child_runs_the_benchmarks_runners(monkeypatch):
  """The child process of scripts/bench_xla_flags.py drives bench_seq's
  and bench_ncf's runners (small shapes here): it must keep up with them."""
  import sys
  from pathlib import Path
  pytest.importorskip("torch")  # bench_seq's PyTorch side (bench extra)
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
  import bench_seq
  import bench_xla_flags
  monkeypatch.setattr(bench_xla_flags, "WORKLOADS", ("SASRec", "GMF"))
  monkeypatch.setitem(bench_seq.SPECS["SASRec"], "batch", 2)
  rates = bench_xla_flags.child(repeats=1)
  assert set(rates) == {"SASRec", "GMF"}
  assert all(r > 0 for r in rates.values())
