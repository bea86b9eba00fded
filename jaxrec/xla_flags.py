"""XLA's CPU flags: jaxrec runs with XLA's defaults and records what it ran
with.

jaxlib 0.10's CPU backend hands dot, elementwise and reduction fusions to
YNNPACK by default. `YNN_OFF` leaves them to XLA's own emitters.  Which is
faster depends on the CPU (results/bench_xla_flags.md, made by
scripts/bench_xla_flags.py):
  - an older 2-core x86-64 CPU (2026-12-02 morning): YNN_OFF faster for
    SASRec (1.20x), MLP-3 (1.22x) and BERT4Rec at L 200 (1.07x);
  - a 2-core Xeon with AVX-512 and AMX (2026-12-02 afternoon): XLA's
    defaults faster for BERT4Rec at its Beauty shape (1.40x) and at L 200
    (1.18x), equal for SASRec and NeuMF, slower for MLP-3 (0.89x).
So the entry points set nothing: XLA reads `XLA_FLAGS` from the
environment when JAX's backend starts, and a user who measures YNN_OFF
faster on their CPU exports it (`export XLA_FLAGS=...`).  Every run's
manifest.json, and every benchmark table's notes (`describe`), record the
XLA_FLAGS in effect.
"""

from __future__ import annotations

import os

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="


def describe() -> str:
  """The sentences a benchmark table's notes carry about XLA_FLAGS and,
  when set, glibc's malloc tunables (which every contender in the process
  shares)."""
  text = (f"XLA_FLAGS: '{os.environ.get('XLA_FLAGS', '')}' (XLA's defaults "
          "unless set; results/bench_xla_flags.md compares YNN fusions off).")
  tunables = os.environ.get("GLIBC_TUNABLES")
  if tunables:
    text += (f" GLIBC_TUNABLES: '{tunables}', set for the whole process, so "
             "for every contender alike.")
  return text
