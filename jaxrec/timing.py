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
