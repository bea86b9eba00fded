"""scripts/seq_steps.py: the benchmarks' JAX steps run without torch, and
race_step_variants traces each contender in its own context and pairs its
rates against the reference."""

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts import seq_steps

ROOT = Path(__file__).resolve().parents[1]


def test_jax_step_runs_without_importing_torch():
  # A one-block model without the attention's blocking compiles in a third
  # of the production model's time; what is tested is the import.
  code = ("import sys; sys.path.insert(0, 'scripts'); import seq_steps; "
          "run, n, params = seq_steps.jax_runner('SASRec', 8, 1, "
          "num_blocks=1, causal_block=0, row_groups=1); run(); "
          "assert n == 8 and params > 0; "
          "assert 'torch' not in sys.modules, 'seq_steps imported torch'")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("quick, expected", [(True, (1, 1)),
                                             (False, (5, 3))])
def test_rounds_and_repeats(quick, expected):
  args = seq_steps.variant_parser("x", "smoke").parse_args(
      ["--quick"] if quick else [])
  assert seq_steps.rounds_and_repeats(args) == expected


def test_race_pairs_each_contender_against_the_reference(monkeypatch):
  active, traced = [], []
  seconds = {"fast": 0.01, "slow": 0.02}

  def context(name):
    @contextlib.contextmanager
    def enter():
      active.append(name)
      yield
      active.pop()
    return enter

  def fake_runner(model, batch, steps):
    name = active[-1]                 # the context it is traced in
    traced.append((model, name, batch, steps))
    return (lambda: time.sleep(seconds[name])), batch * steps, 1

  monkeypatch.setattr(seq_steps, "jax_runner", fake_runner)
  args = argparse.Namespace(quick=False, rounds=3, repeats=3, steps=2)
  rows, notes = seq_steps.race_step_variants(
      {"fast": context("fast"), "slow": context("slow")}, "fast", args,
      models=("SASRec",))
  batch = seq_steps.SPECS["SASRec"]["batch"]
  assert traced == [("SASRec", "fast", batch, 2), ("SASRec", "slow", batch, 2)]
  assert [(r["model"], r["variant"]) for r in rows] == [
      ("SASRec", "fast"), ("SASRec", "slow")]
  ratio = {r["variant"]: r["metrics"]["speed_vs_fast"]["mean"] for r in rows}
  assert ratio["fast"] == 1.0
  assert 0.35 < ratio["slow"] < 0.7                  # half the rate, paired
  rate = {r["variant"]: r["metrics"]["seqs_per_s"]["mean"] for r in rows}
  assert rate["fast"] > rate["slow"] > 0
  assert [n.split(":")[0] for n in notes] == ["SASRec fast", "SASRec slow"]
  assert all(len(n.split(":")[1].split(",")) == 3 for n in notes)  # rounds
