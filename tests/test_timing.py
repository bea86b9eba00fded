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


def test_interleaved_rates_take_turns_each_round():
  order = []

  def make(name, pause):
    def fn():
      order.append(name)
      time.sleep(pause)
    return fn

  rates = timing.interleaved_rates(
      {"slow": (make("slow", 0.02), 4.0), "fast": (make("fast", 0.005), 1.0)},
      rounds=2, repeats=2)
  # Round-robin: each round runs every call `repeats` times, in turn.
  assert order == ["slow"] * 2 + ["fast"] * 2 + ["slow"] * 2 + ["fast"] * 2
  assert len(rates["slow"]) == len(rates["fast"]) == 2
  # Rate = work / seconds: 4 units in >= 0.02 s, 1 unit in >= 0.005 s.
  assert all(0 < r <= 4.0 / 0.02 for r in rates["slow"])
  assert all(0 < r <= 1.0 / 0.005 for r in rates["fast"])
