"""Calibration of `jaxrec.abtest` and `jaxrec.power` by simulated experiments.
Writes results/abtest_calibration.{md,json}.

  python scripts/abtest_calibration.py

A/A: both arms from one distribution; the rejection rate at alpha = 0.05
should lie in the exact binomial 99% interval around 0.05.  A/B: a planted
effect; the rejection rate should lie in the interval around the power
`jaxrec.power` computes.  CUPED: variance reduction against rho**2, and the
bias of the adjusted difference.  Bootstrap: coverage of 95% intervals.
Each scenario runs E experiments at once (rows of an (E, n) array) from
`np.random.default_rng(SEED)`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from jaxrec import abtest, power, results

SEED = 0
ALPHA = 0.05


def _row(test: str, scenario: str, kind: str, rejections, target: float,
         **extra) -> dict:
  n = np.size(rejections)
  low, high = stats.binom.interval(0.99, n, target)
  rate = float(np.mean(rejections))
  cell = lambda v: {"mean": float(v), "std": 0.0}
  return {"model": test, "variant": scenario, "protocol": kind,
          "metrics": {"rate": cell(rate), "target": cell(target),
                      "99% low": cell(low / n), "99% high": cell(high / n),
                      **{k: cell(v) for k, v in extra.items()}},
          "experiments": n, "inside": bool(low <= np.sum(rejections) <= high)}


def aa_rows(rng, e: int) -> list[dict]:
  rows = []
  rej = lambda res: res.p_value < ALPHA
  for name, a, b in (
      ("normal, n=100+100", rng.normal(0, 1, (e, 100)),
       rng.normal(0, 1, (e, 100))),
      ("lognormal, n=100+100", rng.lognormal(0, 1, (e, 100)),
       rng.lognormal(0, 1, (e, 100))),
      ("normal, n=20 (sd 3) + 80 (sd 1)", rng.normal(0, 3, (e, 20)),
       rng.normal(0, 1, (e, 80)))):
    rows.append(_row("welch-t", name, "A/A", rej(abtest.t_test(a, b)), ALPHA))
    rows.append(_row("student-t", name, "A/A",
                     rej(abtest.t_test(a, b, equal_var=True)), ALPHA))
    rows.append(_row("mann-whitney", name, "A/A",
                     rej(abtest.mann_whitney(a, b)), ALPHA))
  for p, n in ((0.05, 5000), (0.01, 1000)):
    c = rng.binomial(n, p, (2, e))
    rows.append(_row("proportions-z", f"p={p}, n={n}+{n}", "A/A",
                     rej(abtest.proportions_z_test(c[0], n, c[1], n)), ALPHA))
  # Two equally good models on the same users: per-user hit (0/1) and a
  # continuous NDCG-like score, correlated through the user's difficulty.
  skill = rng.random((e, 400))
  hits = (rng.random((2, e, 400)) < skill).astype(np.float64)
  score = np.clip(skill + rng.normal(0, 0.2, (2, e, 400)), 0, 1)
  for name, (a, b) in (("per-user 0/1 hits, 400 users", hits),
                       ("per-user scores, 400 users", score)):
    rows.append(_row("paired-t", name, "A/A", rej(abtest.paired_t(a, b)),
                     ALPHA))
    rows.append(_row("wilcoxon", name, "A/A", rej(abtest.wilcoxon(a, b)),
                     ALPHA))
    k = min(e, 2000)
    rows.append(_row("paired-bootstrap", name + " (999 resamples)", "A/A",
                     rej(abtest.paired_bootstrap(a[:k], b[:k],
                                                 n_resamples=999)), ALPHA))
  x = rng.normal(0, 1, (2, e, 200))
  y = 0.7 * x + np.sqrt(1 - 0.49) * rng.normal(0, 1, (2, e, 200))
  adj = abtest.cuped(y[0], x[0], y[1], x[1])
  rows.append(_row("cuped + welch-t", "rho=0.7, n=200+200", "A/A",
                   rej(abtest.t_test(adj.a, adj.b)), ALPHA))
  return rows


def ab_rows(rng, e: int) -> list[dict]:
  rows = []
  for d, n in ((0.2, 200), (0.3, 100), (0.5, 64)):
    a, b = rng.normal(0, 1, (e, n)), rng.normal(d, 1, (e, n))
    for equal_var in (True, False):
      res = abtest.t_test(a, b, equal_var=equal_var)
      rows.append(_row(res.test, f"d={d}, n={n}+{n}", "A/B",
                       res.p_value < ALPHA, float(power.t_power(d, n))))
  res = abtest.t_test(a, b, alternative="greater")
  rows.append(_row("welch-t (greater)", f"d={d}, n={n}+{n}", "A/B",
                   res.p_value < ALPHA,
                   float(power.t_power(d, n, alternative="greater"))))
  for dz, n in ((0.15, 200), (0.1, 800)):
    diff = rng.normal(dz, 1, (e, n))
    res = abtest.paired_t(np.zeros_like(diff), diff)
    rows.append(_row("paired-t", f"d_z={dz}, n={n}", "A/B",
                     res.p_value < ALPHA, float(power.paired_t_power(dz, n))))
  for pa, pb, na, nb in ((0.10, 0.12, 2000, 2000), (0.10, 0.12, 3000, 1500),
                         (0.02, 0.03, 5000, 5000)):
    ca, cb = rng.binomial(na, pa, e), rng.binomial(nb, pb, e)
    res = abtest.proportions_z_test(ca, na, cb, nb)
    rows.append(_row("proportions-z", f"p={pa} vs {pb}, n={na}+{nb}", "A/B",
                     res.p_value < ALPHA,
                     float(power.proportions_power(pa, pb, na, nb))))
  # CUPED: power of the adjusted test = power at d / sqrt(1 - rho**2).
  rho, d, n = 0.7, 0.15, 200
  x = rng.normal(0, 1, (2, e, n))
  y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, (2, e, n))
  y[1] += d
  adj = abtest.cuped(y[0], x[0], y[1], x[1])
  rows.append(_row("cuped + welch-t", f"rho={rho}, d={d}, n={n}+{n}", "A/B",
                   abtest.t_test(adj.a, adj.b).p_value < ALPHA,
                   float(power.t_power(d / np.sqrt(1 - rho**2), n))))
  rows.append(_row("welch-t (no cuped)", f"rho={rho}, d={d}, n={n}+{n}",
                   "A/B", abtest.t_test(y[0], y[1]).p_value < ALPHA,
                   float(power.t_power(d, n))))
  return rows


def cuped_rows(rng, e: int) -> list[dict]:
  rows = []
  for rho in (0.3, 0.5, 0.8):
    n, effect = 500, 0.1
    x = rng.normal(0, 1, (2, e, n))
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, (2, e, n))
    y[1] += effect
    adj = abtest.cuped(y[0], x[0], y[1], x[1])
    raw = y[1].mean(-1) - y[0].mean(-1)
    est = adj.b.mean(-1) - adj.a.mean(-1)
    cell = lambda v: {"mean": float(v), "std": 0.0}
    rows.append({
        "model": "cuped", "variant": f"rho={rho}, n={n}+{n}, effect={effect}",
        "protocol": "variance", "experiments": e,
        "metrics": {"reduction": cell(adj.variance_reduction.mean()),
                    "rho^2": cell(rho**2),
                    "var ratio": cell(est.var() / raw.var()),
                    "1-rho^2": cell(1 - rho**2),
                    "bias": cell(est.mean() - effect),
                    "bias se": cell(est.std() / np.sqrt(e))}})
  return rows


def coverage_rows(rng, e: int) -> list[dict]:
  rows = []
  for name, a, true in (
      ("mean, normal n=50", rng.normal(1, 1, (e, 50)), 1.0),
      ("mean, lognormal n=50", rng.lognormal(0, 1, (e, 50)), np.exp(0.5)),
      ("mean, lognormal n=200", rng.lognormal(0, 1, (e, 200)), np.exp(0.5))):
    for method in ("BCa", "percentile"):
      low, high = abtest.bootstrap_ci(a, method=method, n_resamples=1999)
      rows.append(_row(f"bootstrap {method}", name, "coverage",
                       (low <= true) & (true <= high), 0.95))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiments", type=int, default=10000)
  parser.add_argument("--out_dir", default="results")
  args = parser.parse_args()
  rng = np.random.default_rng(SEED)
  e = args.experiments
  start = time.perf_counter()
  rows = (aa_rows(rng, e) + ab_rows(rng, e) + cuped_rows(rng, e // 5)
          + coverage_rows(rng, e // 10))
  seconds = time.perf_counter() - start
  outside = [f"{r['model']} ({r['variant']}, {r['protocol']})"
             for r in rows if r.get("inside") is False]
  notes = (
      f"Rejection rates at alpha = {ALPHA} over simulated experiments "
      f"(A/A and A/B: {e} each, paired bootstrap {min(e, 2000)}; CUPED "
      f"variance: {e // 5}; bootstrap coverage: {e // 10} with 1999 "
      "resamples), seed "
      f"{SEED}; {seconds:.0f} s in all.  'target' is alpha (A/A), the power "
      "from `jaxrec.power` (A/B: Student t power by the noncentral t, also "
      "for Welch; proportions by the normal approximation) or 0.95 "
      "(coverage); '99% low/high' bound the exact binomial 99% interval of "
      "the rate around the target.  CUPED rows: 'reduction' is the pooled "
      "1 - var(adjusted) / var(y) against rho^2; 'var ratio' is the "
      "variance of the adjusted difference in means over experiments "
      "divided by the raw one, against 1 - rho^2; 'bias' is the mean "
      "adjusted difference minus the planted effect, with its standard "
      "error.\n\nOutside their interval: "
      + ("; ".join(outside) if outside else "none") + ".  The scenario "
      "n=20 (sd 3) + 80 (sd 1) is there on purpose: Student's t assumes "
      "equal variances, and Mann-Whitney tests P(B > A) + P(B = A) / 2 = "
      "1/2 under identical distributions, not equal means; both are known "
      "to reject too often there, and the check must be able to see it.  Bootstrap intervals for the mean of "
      "lognormal data under-cover at n=50, a known small-sample limit of "
      "the percentile and BCa methods on skewed data (at n=200 they are "
      "within); the per-user metrics the sweeps test have thousands of "
      "users.")
  command = results.command_line(env=("PYTHONPATH",))
  paths = results.write("abtest_calibration", rows, command, args.out_dir,
                        notes)
  print(paths[1].read_text())


if __name__ == "__main__":
  main()
