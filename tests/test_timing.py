"""Benchmark timing: warm-up calls are run but not timed."""

import time

from jaxrec import timing


def test_warmup_is_not_timed_and_the_median_is_taken():
  calls = []

  def fn():
    calls.append(None)
    # The first (warm-up) call is slow, like a JIT compilation.
    time.sleep(0.2 if len(calls) == 1 else 0.01)

  times = timing.seconds(fn, repeats=3, warmup=1)
  assert len(calls) == 4 and len(times) == 3
  assert max(times) < 0.15
  assert 0.005 < timing.median_seconds(fn, repeats=3, warmup=0) < 0.15
