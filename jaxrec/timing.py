"""Wall-clock timing for the benchmarks: medians after warm-up."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def seconds(fn: Callable[[], object], repeats: int = 5,
            warmup: int = 1) -> list[float]:
  """Wall seconds of each of `repeats` calls of `fn`, after `warmup` calls
  (so compilation is not step time).  `fn` must block until its work is
  done (e.g. end with `jax.block_until_ready`)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def median_seconds(fn: Callable[[], object], repeats: int = 5,
                   warmup: int = 1) -> float:
  """The median of `seconds(fn, repeats, warmup)`."""
  return float(np.median(seconds(fn, repeats, warmup)))


def interleaved_rates(calls: dict[str, tuple[Callable[[], object], float]],
                      rounds: int = 3, repeats: int = 3
                      ) -> dict[str, list[float]]:
  """Work per second of each call, one figure per round: every round times
  each call in turn (median of `repeats`, no warm-up), so a CPU whose speed
  drifts over minutes slows all contenders alike rather than whichever ran
  during a slow spell.

  Args:
    calls: name -> (fn, work units per call); fn blocks until done and
      has already been compiled / warmed up.
  Returns:
    name -> `rounds` rates (work / median seconds), in round order.
  """
  out = {name: [] for name in calls}
  for _ in range(rounds):
    for name, (fn, work) in calls.items():
      out[name].append(work / median_seconds(fn, repeats, warmup=0))
  return out


def paired_ratio(per_round: dict[str, list[float]], name: str,
                 base: str) -> float:
  """Median over rounds of name's rate / base's rate in the same round,
  from `interleaved_rates`' output: the pairing cancels the CPU's drift."""
  return float(np.median([a / b for a, b in zip(per_round[name],
                                                per_round[base])]))


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
  """Measured float32 FLOP/s of a jitted n x n x n matmul on JAX's default
  device (median of `repeats` after a warm-up): the peak that benchmarks
  report achieved FLOP/s against."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return 2 * n ** 3 / median_seconds(lambda: jax.block_until_ready(f(a)),
                                     repeats)
