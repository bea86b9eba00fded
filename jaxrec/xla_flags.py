"""XLA compiler flags this project sets for the CPU backend, and why.

jaxlib 0.10's CPU backend hands dot, elementwise and reduction fusions to
YNNPACK by default. On the 2-core CPU our benchmarks run on, the SASRec,
BERT4Rec and NCF MLP train steps ran faster with those fusions left to
XLA's own emitters (results/bench_xla_flags.md, scripts/bench_xla_flags.py),
so the entry points (experiments.main, experiments.sweep, the bench
scripts) call `add_cpu_flags` before JAX starts its backend.

A flag XLA does not know aborts the process, so the flags are only added
for jaxlib versions they were tested with; a user's own XLA_FLAGS setting
of the same flag wins.
"""

from __future__ import annotations

import os
from typing import MutableMapping

import jaxlib
from absl import logging

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
TESTED_JAXLIB = ((0, 10),)   # (major, minor) releases that accept CPU_FLAGS


def _jaxlib_release() -> tuple[int, int]:
  major, minor = jaxlib.__version__.split(".")[:2]
  return int(major), int(minor)


def add_cpu_flags(environ: MutableMapping[str, str] | None = None
                  ) -> list[str]:
  """Appends CPU_FLAGS to environ['XLA_FLAGS'] (default os.environ) and
  returns the flags added.

  Adds nothing when the jaxlib release is untested, when JAX's backend is
  already running (XLA read its flags then), or for a flag the user
  already set.
  """
  from jax._src import xla_bridge   # private: JAX has no public query
  environ = os.environ if environ is None else environ
  if _jaxlib_release() not in TESTED_JAXLIB:
    logging.info("jaxlib %s: XLA CPU flags %s not tested there, not set",
                 jaxlib.__version__, CPU_FLAGS)
    return []
  if environ is os.environ and xla_bridge.backends_are_initialized():
    logging.warning("JAX's backend already started; XLA CPU flags %s "
                    "not applied", CPU_FLAGS)
    return []
  current = environ.get("XLA_FLAGS", "")
  added = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added


def describe() -> str:
  """The sentence a benchmark table's notes carry about XLA_FLAGS."""
  return (f"XLA_FLAGS: '{os.environ.get('XLA_FLAGS', '')}' (jaxrec.xla_flags;"
          " results/bench_xla_flags.md compares XLA's defaults).")
