"""A/B-test statistics: two-sample and paired tests, bootstrap, CUPED.

Every test compares a treatment B against a control A, and every difference
is B - A.  Results are `Comparison`s: statistic, p-value, the estimate the
test is about, its confidence interval and a standardised effect size.

scipy does the tests it has (`ttest_ind`, `ttest_rel`, `mannwhitneyu`,
`wilcoxon`, `bootstrap`); written here is only what it lacks: the
two-proportion z-test, effect sizes, the paired bootstrap p-value and CUPED.
Power and sample size are in `jaxrec.power`.

Vectorised: samples are (..., n) arrays, tested along the last axis; leading
axes are independent experiments (a simulation runs thousands at once), and
the result fields then have the leading shape (...).

Legend: n = observations (users) per arm, ... = independent experiments.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from scipy import stats

Array = np.ndarray | float
ALTERNATIVES = ("two-sided", "less", "greater")


@dataclasses.dataclass(frozen=True)
class Comparison:
  """B against A.

  Attributes:
    test: the test's name, e.g. 'welch-t'.
    statistic: the test statistic (t, U, z, W).
    p_value: for `alternative` ('greater': B above A).
    estimate: what the test is about, B - A (difference in means or
      proportions; for Mann-Whitney, P(B > A) + P(B = A) / 2).
    ci: the `confidence` interval of `estimate`, or None where the test
      gives none.
    effect: a standardised effect size (named per test).
    confidence: the level of `ci`.
  """

  test: str
  statistic: Array
  p_value: Array
  estimate: Array
  ci: tuple[Array, Array] | None
  effect: Array
  confidence: float


def t_test(a, b, *, equal_var: bool = False, confidence: float = 0.95,
           alternative: str = "two-sided") -> Comparison:
  """Welch's t-test (default) or Student's (`equal_var=True`).

  Args:
    a, b: (..., n_a) and (..., n_b) control and treatment samples.

  Returns:
    estimate = mean(b) - mean(a); effect = Cohen's d (pooled SD).
  """
  a, b = _samples(a, b, alternative)
  res = stats.ttest_ind(b, a, axis=-1, equal_var=equal_var,
                        alternative=alternative)
  ci = res.confidence_interval(confidence)
  return Comparison(
      "student-t" if equal_var else "welch-t", res.statistic, res.pvalue,
      b.mean(-1) - a.mean(-1), (ci.low, ci.high), cohens_d(a, b), confidence)


def mann_whitney(a, b, *, alternative: str = "two-sided") -> Comparison:
  """Mann-Whitney U test (normal approximation with ties, or exact).

  Returns:
    statistic = U of b; estimate = P(B > A) + P(B = A) / 2 (the AUC of b
    against a); effect = rank-biserial correlation 2 * estimate - 1.
  """
  a, b = _samples(a, b, alternative)
  res = stats.mannwhitneyu(b, a, axis=-1, alternative=alternative)
  auc = res.statistic / (a.shape[-1] * b.shape[-1])
  return Comparison("mann-whitney", res.statistic, res.pvalue, auc, None,
                    2 * auc - 1, np.nan)


def proportions_z_test(successes_a, n_a, successes_b, n_b, *,
                       confidence: float = 0.95,
                       alternative: str = "two-sided") -> Comparison:
  """Two-proportion z-test (pooled variance under H0, no continuity
  correction); z**2 is the 2x2 chi-square statistic.

  Args:
    successes_a, n_a, successes_b, n_b: counts, broadcastable arrays.

  Returns:
    estimate = p_b - p_a with a Wald (unpooled) interval; effect = Cohen's h.
  """
  _check_alternative(alternative)
  sa, na, sb, nb = (np.asarray(x, np.float64)
                    for x in (successes_a, n_a, successes_b, n_b))
  if np.any(na < 1) or np.any(nb < 1):
    raise ValueError("proportions_z_test: every n must be >= 1")
  if np.any((sa < 0) | (sa > na) | (sb < 0) | (sb > nb)):
    raise ValueError("proportions_z_test: successes must be in [0, n]")
  pa, pb = sa / na, sb / nb
  pooled = (sa + sb) / (na + nb)
  se0 = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
  with np.errstate(divide="ignore", invalid="ignore"):
    z = (pb - pa) / se0  # NaN when every trial agrees (no variance)
  se1 = np.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
  diff = pb - pa
  low, high = _normal_ci(diff, se1, confidence, alternative)
  h = 2 * np.arcsin(np.sqrt(pb)) - 2 * np.arcsin(np.sqrt(pa))
  return Comparison("proportions-z", z, _normal_p(z, alternative), diff,
                    (low, high), h, confidence)


def paired_t(a, b, *, confidence: float = 0.95,
             alternative: str = "two-sided") -> Comparison:
  """Paired t-test on b - a (e.g. two models' metrics on the same users).

  Returns:
    estimate = mean(b - a); effect = Cohen's d_z = mean / SD of the
    differences.
  """
  a, b = _pairs(a, b, alternative)
  res = stats.ttest_rel(b, a, axis=-1, alternative=alternative)
  ci = res.confidence_interval(confidence)
  d = b - a
  return Comparison("paired-t", res.statistic, res.pvalue, d.mean(-1),
                    (ci.low, ci.high), _dz(d), confidence)


def wilcoxon(a, b, *, alternative: str = "two-sided") -> Comparison:
  """Wilcoxon signed-rank test on b - a; zero differences are dropped
  ('wilcox'), ties get mid-ranks (normal approximation then).

  Returns:
    statistic = scipy's W; estimate = mean(b - a) (for reading only; the
    test is about ranks); effect = matched-pairs rank-biserial correlation
    (W+ - W-) / (W+ + W-) over the non-zero differences.
  """
  a, b = _pairs(a, b, alternative)
  d = b - a
  with np.errstate(divide="ignore", invalid="ignore"):
    res = stats.wilcoxon(d, axis=-1, zero_method="wilcox",
                         alternative=alternative)
  return Comparison("wilcoxon", res.statistic, res.pvalue, d.mean(-1), None,
                    rank_biserial(d), np.nan)


def paired_bootstrap(a, b, *, confidence: float = 0.95,
                     n_resamples: int = 9999, method: str = "BCa",
                     seed: int = 0) -> Comparison:
  """Paired bootstrap of mean(b - a): users are resampled with both arms.

  The interval is scipy's (`method` 'BCa' or 'percentile'); the two-sided
  p-value is the share of the null-centred bootstrap means at least as far
  from 0 as the observed mean, (1 + count) / (1 + n_resamples).

  Returns:
    statistic = estimate = mean(b - a); effect = Cohen's d_z.
  """
  a, b = _pairs(a, b, "two-sided")
  d = b - a
  res = stats.bootstrap((d,), np.mean, axis=-1, n_resamples=n_resamples,
                        confidence_level=confidence, method=method,
                        batch=_batch(d), rng=np.random.default_rng(seed))
  mean = d.mean(-1)
  centred = res.bootstrap_distribution - mean[..., None]
  count = (np.abs(centred) >= np.abs(mean)[..., None]).sum(-1)
  p = (1 + count) / (1 + n_resamples)
  return Comparison("paired-bootstrap", mean, p, mean,
                    (res.confidence_interval.low,
                     res.confidence_interval.high), _dz(d), confidence)


PAIRED_TESTS: dict[str, Callable[..., Comparison]] = {
    "paired-t": paired_t, "wilcoxon": wilcoxon,
    "paired-bootstrap": paired_bootstrap}


def bootstrap_ci(*samples, statistic: Callable = np.mean,
                 confidence: float = 0.95, n_resamples: int = 9999,
                 method: str = "BCa", paired: bool = False,
                 seed: int = 0) -> tuple[Array, Array]:
  """A bootstrap confidence interval of `statistic(*samples, axis=-1)`.

  Args:
    samples: (..., n_i) arrays, resampled independently (or together when
      `paired`).
    statistic: vectorised, taking `axis`; e.g. `np.mean`, or
      `lambda a, b, axis: b.mean(axis) - a.mean(axis)` for a difference.
    method: 'BCa', 'percentile' or 'basic' (scipy's).

  Returns:
    (low, high), each of the leading shape (...).
  """
  res = stats.bootstrap(samples, statistic, axis=-1, n_resamples=n_resamples,
                        confidence_level=confidence, method=method,
                        paired=paired, batch=_batch(*samples),
                        rng=np.random.default_rng(seed))
  return res.confidence_interval.low, res.confidence_interval.high


@dataclasses.dataclass(frozen=True)
class Cuped:
  """CUPED-adjusted outcomes (Deng et al., WSDM 2013).

  Attributes:
    a, b: (..., n_a), (..., n_b) adjusted outcomes; their means are
      unbiased for the arms' outcome means (the covariate is pre-experiment,
      so independent of assignment).
    theta: (...,) the regression slope cov(y, x) / var(x), pooled over arms.
    variance_reduction: (...,) 1 - var(adjusted) / var(y), pooled; about
      rho**2 for a covariate with correlation rho.
  """

  a: np.ndarray
  b: np.ndarray
  theta: Array
  variance_reduction: Array


def cuped(y_a, x_a, y_b, x_b) -> Cuped:
  """y - theta * (x - mean(x)) with theta and mean(x) pooled over both arms.

  Args:
    y_a, x_a: (..., n_a) outcome and pre-experiment covariate of arm A.
    y_b, x_b: (..., n_b) the same for arm B.

  Test the adjusted arms with `t_test(result.a, result.b)`.
  """
  y_a, x_a, y_b, x_b = (np.asarray(v, np.float64)
                        for v in (y_a, x_a, y_b, x_b))
  if y_a.shape != x_a.shape or y_b.shape != x_b.shape:
    raise ValueError(f"cuped: outcome and covariate shapes differ: "
                     f"{y_a.shape} vs {x_a.shape}, {y_b.shape} vs {x_b.shape}")
  y = np.concatenate([y_a, y_b], -1)
  x = np.concatenate([x_a, x_b], -1)
  xc = x - x.mean(-1, keepdims=True)
  yc = y - y.mean(-1, keepdims=True)
  theta = (xc * yc).sum(-1) / (xc * xc).sum(-1)
  x_mean = x.mean(-1, keepdims=True)
  adjust = lambda yy, xx: yy - theta[..., None] * (xx - x_mean)
  reduction = 1 - (adjust(y, x).var(-1) / y.var(-1))
  return Cuped(adjust(y_a, x_a), adjust(y_b, x_b), theta, reduction)


def cohens_d(a, b) -> Array:
  """(mean(b) - mean(a)) / pooled SD (ddof=1), along the last axis."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  na, nb = a.shape[-1], b.shape[-1]
  pooled = ((na - 1) * a.var(-1, ddof=1) + (nb - 1) * b.var(-1, ddof=1)) / (
      na + nb - 2)
  return (b.mean(-1) - a.mean(-1)) / np.sqrt(pooled)


def rank_biserial(d) -> Array:
  """(W+ - W-) / (W+ + W-) of the signed ranks of the non-zero `d`."""
  d = np.asarray(d, np.float64)
  zeros = (d == 0).sum(-1, keepdims=True)
  # Zeros take the lowest ranks of |d|; subtracting their count gives each
  # non-zero difference its (mid-)rank among the non-zero ones.
  ranks = stats.rankdata(np.abs(d), axis=-1) - zeros
  signed = (np.sign(d) * ranks).sum(-1)
  m = d.shape[-1] - zeros[..., 0]
  with np.errstate(divide="ignore", invalid="ignore"):
    return signed / (m * (m + 1) / 2)


def _batch(*samples) -> int:
  # Resamples per batch: about 2**22 values in flight, whatever the size.
  return max(1, 2**22 // sum(np.size(s) for s in samples))


def _dz(d: np.ndarray) -> Array:
  with np.errstate(divide="ignore", invalid="ignore"):
    return d.mean(-1) / d.std(-1, ddof=1)


def _normal_p(z, alternative: str) -> Array:
  if alternative == "two-sided":
    return 2 * stats.norm.sf(np.abs(z))
  return stats.norm.sf(z) if alternative == "greater" else stats.norm.cdf(z)


def _normal_ci(estimate, se, confidence: float, alternative: str):
  if alternative == "two-sided":
    q = stats.norm.ppf(0.5 + confidence / 2)
    return estimate - q * se, estimate + q * se
  q = stats.norm.ppf(confidence)
  if alternative == "greater":
    return estimate - q * se, np.full_like(estimate, np.inf)
  return np.full_like(estimate, -np.inf), estimate + q * se


def _check_alternative(alternative: str):
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative={alternative!r}; expected one of "
                     f"{ALTERNATIVES}")


def _samples(a, b, alternative: str):
  _check_alternative(alternative)
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape[-1] < 2 or b.shape[-1] < 2:
    raise ValueError(f"need at least 2 observations per arm along the last "
                     f"axis; got shapes {a.shape} and {b.shape}")
  return a, b


def _pairs(a, b, alternative: str):
  a, b = _samples(a, b, alternative)
  if a.shape != b.shape:
    raise ValueError(f"paired samples must have the same shape (the same "
                     f"users in the same order); got {a.shape} and {b.shape}")
  return a, b
