"""A/B statistics: against scipy, brute force and simulated experiments.

Simulations run E experiments at once (rows of an (E, n) array); a rate
passes when it lies in the exact binomial 99% interval around its target.
"""

import numpy as np
import pytest
from scipy import stats

from jaxrec import abtest, power

E = 2000  # simulated experiments per A/A or A/B check


def _binomial_ok(rejections, target: float) -> bool:
  low, high = stats.binom.interval(0.99, np.size(rejections), target)
  return low <= np.sum(rejections) <= high


@pytest.mark.parametrize("equal_var", [True, False])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_t_test_matches_scipy(equal_var, alternative):
  rng = np.random.default_rng(0)
  a, b = rng.normal(0, 1, 30), rng.normal(0.4, 2, 45)
  got = abtest.t_test(a, b, equal_var=equal_var, alternative=alternative,
                      confidence=0.9)
  want = stats.ttest_ind(b, a, equal_var=equal_var, alternative=alternative)
  ci = want.confidence_interval(0.9)
  np.testing.assert_allclose([got.statistic, got.p_value, *got.ci],
                             [want.statistic, want.pvalue, ci.low, ci.high])
  assert np.isclose(got.estimate, b.mean() - a.mean())
  pooled = (np.sum((a - a.mean())**2) + np.sum((b - b.mean())**2)) / 73
  assert np.isclose(got.effect, (b.mean() - a.mean()) / np.sqrt(pooled))


def test_mann_whitney_matches_scipy_and_pairwise_count():
  rng = np.random.default_rng(1)
  a, b = rng.integers(0, 6, 40), rng.integers(1, 7, 35)  # many ties
  got = abtest.mann_whitney(a, b)
  want = stats.mannwhitneyu(b, a)
  assert np.isclose(got.statistic, want.statistic)
  assert np.isclose(got.p_value, want.pvalue)
  auc = np.mean((b[:, None] > a) + 0.5 * (b[:, None] == a))
  assert np.isclose(got.estimate, auc) and np.isclose(got.effect, 2 * auc - 1)


def test_proportions_z_is_the_chi_square_test():
  got = abtest.proportions_z_test(120, 1000, 151, 1050)
  table = [[120, 880], [151, 899]]
  chi = stats.chi2_contingency(table, correction=False)
  assert np.isclose(got.statistic**2, chi.statistic)
  assert np.isclose(got.p_value, chi.pvalue)
  assert np.isclose(got.estimate, 151 / 1050 - 0.12)
  lo, hi = got.ci
  assert np.isclose((lo + hi) / 2, got.estimate)
  assert np.isclose(hi - lo, 2 * 1.959964 * np.sqrt(
      0.12 * 0.88 / 1000 + (151 / 1050) * (899 / 1050) / 1050))
  greater = abtest.proportions_z_test(120, 1000, 151, 1050,
                                      alternative="greater")
  assert np.isclose(greater.p_value, got.p_value / 2)


def test_paired_tests_match_scipy_and_brute_force():
  rng = np.random.default_rng(2)
  a = rng.normal(size=60)
  b = np.round(a + rng.normal(0.2, 1, 60), 1)  # ties among differences
  b[:5] = a[:5]  # and zero differences
  got = abtest.paired_t(a, b)
  want = stats.ttest_1samp(b - a, 0.0)
  np.testing.assert_allclose([got.statistic, got.p_value, *got.ci],
                             [want.statistic, want.pvalue,
                              *want.confidence_interval()])
  w = abtest.wilcoxon(a, b)
  want = stats.wilcoxon(b, a, zero_method="wilcox")
  assert np.isclose(w.statistic, want.statistic)
  assert np.isclose(w.p_value, want.pvalue)
  d = (b - a)[b != a]
  ranks = stats.rankdata(np.abs(d))
  w_plus, w_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
  assert np.isclose(w.effect, (w_plus - w_minus) / (w_plus + w_minus))


def test_paired_bootstrap_agrees_with_paired_t_on_many_users():
  rng = np.random.default_rng(3)
  a = rng.random(3000)
  b = a + rng.normal(0.02, 0.3, 3000)
  boot, t = abtest.paired_bootstrap(a, b), abtest.paired_t(a, b)
  np.testing.assert_allclose(boot.ci, t.ci, atol=0.001)
  assert abs(boot.p_value - t.p_value) < 0.01
  assert boot.p_value < 0.01


def test_aa_false_positive_rates_stay_near_alpha():
  rng = np.random.default_rng(4)
  x = rng.lognormal(0, 1, (2, E, 120))  # skewed, as revenue is
  assert _binomial_ok(abtest.t_test(x[0], x[1]).p_value < 0.05, 0.05)
  assert _binomial_ok(
      abtest.t_test(x[0], x[1], equal_var=True).p_value < 0.05, 0.05)
  assert _binomial_ok(abtest.mann_whitney(x[0], x[1]).p_value < 0.05, 0.05)
  clicks = rng.binomial(5000, 0.05, (2, E))
  z = abtest.proportions_z_test(clicks[0], 5000, clicks[1], 5000)
  assert _binomial_ok(z.p_value < 0.05, 0.05)
  # Paired per-user hit rates of two equally good models: 0/1, correlated.
  skill = rng.random((E, 400))
  hits = (rng.random((2, E, 400)) < skill).astype(np.float32)
  for test in (abtest.paired_t, abtest.wilcoxon):
    assert _binomial_ok(test(hits[0], hits[1]).p_value < 0.05, 0.05)
  boot = abtest.paired_bootstrap(hits[0, :400, :100], hits[1, :400, :100],
                                 n_resamples=999)
  assert _binomial_ok(boot.p_value < 0.05, 0.05)


def test_aa_simulation_detects_a_miscalibrated_test():
  # Student's t with a small noisy arm and a large quiet one is known to
  # reject far too often; Welch's stays at alpha.  The check has teeth.
  rng = np.random.default_rng(5)
  a, b = rng.normal(0, 3, (E, 20)), rng.normal(0, 1, (E, 80))
  assert not _binomial_ok(
      abtest.t_test(a, b, equal_var=True).p_value < 0.05, 0.05)
  assert _binomial_ok(abtest.t_test(a, b).p_value < 0.05, 0.05)


def test_ab_power_matches_computed_power():
  rng = np.random.default_rng(6)
  a, b = rng.normal(0, 1, (E, 100)), rng.normal(0.3, 1, (E, 100))
  rejections = abtest.t_test(a, b, equal_var=True).p_value < 0.05
  assert _binomial_ok(rejections, power.t_power(0.3, 100))
  one_sided = abtest.t_test(a, b, equal_var=True, alternative="greater")
  assert _binomial_ok(one_sided.p_value < 0.05,
                      power.t_power(0.3, 100, alternative="greater"))
  d = rng.normal(0.15, 1, (E, 200))
  paired = abtest.paired_t(np.zeros_like(d), d)
  assert _binomial_ok(paired.p_value < 0.05, power.paired_t_power(0.15, 200))
  ca, cb = rng.binomial(3000, 0.10, E), rng.binomial(2000, 0.12, E)
  z = abtest.proportions_z_test(ca, 3000, cb, 2000)
  assert _binomial_ok(z.p_value < 0.05,
                      power.proportions_power(0.10, 0.12, 3000, 2000))


def test_sample_sizes_are_the_smallest_reaching_the_power():
  # Cohen (1988) Table 2.4.1: d = 0.5, alpha 0.05 two-sided, power 0.8 ->
  # 64 per group; G*Power gives 34 pairs at d_z = 0.5.
  assert power.t_sample_size(0.5) == 64
  assert power.paired_t_sample_size(0.5) == 34
  for effect, ratio in ((0.2, 1.0), (-0.35, 2.0)):
    n = power.t_sample_size(effect, power=0.9, ratio=ratio)
    assert power.t_power(effect, n, np.ceil(ratio * n)) >= 0.9
    assert power.t_power(effect, n - 1, np.ceil(ratio * (n - 1))) < 0.9
  n = power.proportions_sample_size(0.10, 0.12)
  assert power.proportions_power(0.10, 0.12, n) >= 0.8
  assert power.proportions_power(0.10, 0.12, n - 1) < 0.8
  with pytest.raises(ValueError, match="not on the side"):
    power.t_sample_size(0.3, alternative="less")


def test_t_power_approaches_the_normal_power_with_many_users():
  # Large n is where scipy's noncentral t lower tail turns NaN.
  for n, d in ((5000, 0.05), (2048, 0.3), (10**6, 0.004)):
    shift, z = d * np.sqrt(n / 2), stats.norm.ppf(0.975)
    normal = stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift)
    assert np.isclose(power.t_power(d, n), normal, atol=1e-3)
    assert np.isclose(power.t_power(-d, n), normal, atol=1e-3)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_cuped_cuts_variance_by_rho_squared_without_bias(rho):
  rng = np.random.default_rng(7)
  n, effect = 300, 0.1
  x = rng.normal(0, 1, (2, E, n))
  y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, (2, E, n))
  y[1] += effect
  adjusted = abtest.cuped(y[0], x[0], y[1], x[1])
  assert np.allclose(adjusted.variance_reduction.mean(), rho**2, atol=0.01)
  raw = y[1].mean(-1) - y[0].mean(-1)
  cuped = adjusted.b.mean(-1) - adjusted.a.mean(-1)
  se = cuped.std() / np.sqrt(E)
  assert abs(cuped.mean() - effect) < 4 * se
  ratio = cuped.var() / raw.var()
  assert abs(ratio - (1 - rho**2)) < 0.1 * (1 - rho**2)
  # A/A on the adjusted outcomes still rejects at alpha.
  aa = abtest.cuped(y[0], x[0], y[1] - effect, x[1])
  assert _binomial_ok(abtest.t_test(aa.a, aa.b).p_value < 0.05, 0.05)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_bootstrap_ci_covers_the_true_value(method):
  rng = np.random.default_rng(8)
  a, b = rng.normal(1, 1, (400, 60)), rng.normal(1.5, 2, (400, 70))
  low, high = abtest.bootstrap_ci(a, method=method, n_resamples=999)
  assert _binomial_ok((low <= 1) & (1 <= high), 0.95)
  diff = lambda a, b, axis: b.mean(axis) - a.mean(axis)
  low, high = abtest.bootstrap_ci(a, b, statistic=diff, method=method,
                                  n_resamples=999)
  assert _binomial_ok((low <= 0.5) & (0.5 <= high), 0.95)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="same users in the same order"):
    abtest.paired_t(np.zeros(5), np.zeros(6))
  with pytest.raises(ValueError, match=r"successes must be in \[0, n\]"):
    abtest.proportions_z_test(11, 10, 3, 10)
  with pytest.raises(ValueError, match="alternative"):
    abtest.t_test(np.zeros(5), np.ones(5), alternative="bigger")
  with pytest.raises(ValueError, match="at least 2 observations"):
    abtest.mann_whitney(np.zeros(1), np.ones(5))
