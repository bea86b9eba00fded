"""Power and sample size for the tests of `jaxrec.abtest`.

t-tests use the exact noncentral t distribution (equal variances, normal
outcomes); proportions use the normal approximation of the pooled z-test
(variance p(1-p) pooled under H0, unpooled under H1; no continuity
correction), the test `abtest.proportions_z_test` runs.

Power functions broadcast over their array arguments.  Sample sizes are the
smallest integer n with power >= the target, found by doubling and
bisection on the power function itself (power grows with n).

Effect sizes: Cohen's d = (mean_b - mean_a) / SD for two samples, d_z =
mean(b - a) / SD(b - a) for pairs.  'greater' means B above A.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

from jaxrec.abtest import ALTERNATIVES, Array


def t_power(effect, n_a, n_b=None, *, alpha: float = 0.05,
            alternative: str = "two-sided") -> Array:
  """Power of the two-sample Student t-test at Cohen's d = `effect`.

  Args:
    effect: d, the true standardised difference (B - A).
    n_a, n_b: observations per arm (`n_b` defaults to `n_a`).
  """
  n_a = np.asarray(n_a, np.float64)
  n_b = n_a if n_b is None else np.asarray(n_b, np.float64)
  df = n_a + n_b - 2
  nc = np.asarray(effect, np.float64) * np.sqrt(n_a * n_b / (n_a + n_b))
  return _t_power(nc, df, alpha, alternative)


def paired_t_power(effect, n, *, alpha: float = 0.05,
                   alternative: str = "two-sided") -> Array:
  """Power of the paired t-test over `n` pairs at d_z = `effect`."""
  n = np.asarray(n, np.float64)
  nc = np.asarray(effect, np.float64) * np.sqrt(n)
  return _t_power(nc, n - 1, alpha, alternative)


def proportions_power(p_a, p_b, n_a, n_b=None, *, alpha: float = 0.05,
                      alternative: str = "two-sided") -> Array:
  """Power of the pooled two-proportion z-test at true rates p_a, p_b."""
  _check(alpha, alternative)
  p_a, p_b = np.asarray(p_a, np.float64), np.asarray(p_b, np.float64)
  n_a = np.asarray(n_a, np.float64)
  n_b = n_a if n_b is None else np.asarray(n_b, np.float64)
  pooled = (n_a * p_a + n_b * p_b) / (n_a + n_b)
  se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
  se1 = np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
  diff = p_b - p_a
  if alternative == "two-sided":
    z = stats.norm.ppf(1 - alpha / 2)
    return (stats.norm.sf((z * se0 - diff) / se1)
            + stats.norm.cdf((-z * se0 - diff) / se1))
  z = stats.norm.ppf(1 - alpha)
  if alternative == "greater":
    return stats.norm.sf((z * se0 - diff) / se1)
  return stats.norm.cdf((-z * se0 - diff) / se1)


def t_sample_size(effect: float, *, power: float = 0.8, alpha: float = 0.05,
                  ratio: float = 1.0, alternative: str = "two-sided") -> int:
  """Smallest n_a (with n_b = ceil(ratio * n_a)) reaching `power`."""
  return _smallest_n(lambda n: t_power(effect, n, np.ceil(ratio * n),
                                       alpha=alpha, alternative=alternative),
                     power, effect, alternative)


def paired_t_sample_size(effect: float, *, power: float = 0.8,
                         alpha: float = 0.05,
                         alternative: str = "two-sided") -> int:
  """Smallest number of pairs reaching `power` at d_z = `effect`."""
  return _smallest_n(lambda n: paired_t_power(effect, n, alpha=alpha,
                                              alternative=alternative),
                     power, effect, alternative)


def proportions_sample_size(p_a: float, p_b: float, *, power: float = 0.8,
                            alpha: float = 0.05, ratio: float = 1.0,
                            alternative: str = "two-sided") -> int:
  """Smallest n_a (with n_b = ceil(ratio * n_a)) reaching `power`."""
  return _smallest_n(
      lambda n: proportions_power(p_a, p_b, n, np.ceil(ratio * n),
                                  alpha=alpha, alternative=alternative),
      power, p_b - p_a, alternative)


def _t_power(nc, df, alpha: float, alternative: str) -> Array:
  _check(alpha, alternative)
  # P(T < -t) is taken as P(T' > t) with T' ~ nct(df, -nc): scipy's
  # nct.cdf returns NaN far in the lower tail (e.g. df=4094, nc=9.6).
  if alternative == "two-sided":
    t = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(t, df, nc) + stats.nct.sf(t, df, -nc)
  t = stats.t.ppf(1 - alpha, df)
  return stats.nct.sf(t, df, nc if alternative == "greater" else -nc)


def _smallest_n(power_fn: Callable[[float], Array], target: float,
                effect: float, alternative: str, limit: int = 2**40) -> int:
  if not 0 < target < 1:
    raise ValueError(f"power={target} must be in (0, 1)")
  if effect == 0 or (alternative == "greater" and effect < 0) or (
      alternative == "less" and effect > 0):
    raise ValueError(f"no sample size reaches power {target}: effect "
                     f"{effect} is not on the side of alternative="
                     f"{alternative!r}")
  lo, hi = 1, 2  # power(lo) < target <= power(hi) once found
  while power_fn(hi) < target:
    lo, hi = hi, hi * 2
    if hi > limit:
      raise ValueError(f"power {target} is out of reach below n={limit}")
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if power_fn(mid) >= target else (mid, hi)
  return hi


def _check(alpha: float, alternative: str):
  if not 0 < alpha < 1:
    raise ValueError(f"alpha={alpha} must be in (0, 1)")
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r}; expected one of "
                     f"{ALTERNATIVES}")
