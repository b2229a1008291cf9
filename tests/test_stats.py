"""gantx.stats: intervals and the sign-flip test by hand and against scipy, and their coverage measured by
simulation (10,000 trials, fixed seeds: every number asserted here was measured first and is deterministic)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from gantx import stats

# The skewness of seed-to-seed metric noise assumed "typical": gamma with shape 4 (skewness 1) and lognormal
# with sigma 0.25 (skewness 0.78). FID, L1 or PSNR over a test set are averages of many images' terms (so close
# to normal) that move together with a run's seed; a skewness of 1 is on the pessimistic side of that.
TYPICAL = {"normal": stats.normal(0.0, 1.0), "gamma 4": stats.gamma(4.0), "lognormal 0.25": stats.lognormal(0.25)}
NS = (3, 5, 10)


# ----------------------------------------------------------------------------- by hand


def test_mean_interval_by_hand_and_scipy():
  # N = 3: mean 2, std 1, t_{0.975, 2} = 4.302653: 2 -+ 4.302653 / sqrt(3) = 2 -+ 2.484138
  np.testing.assert_allclose(stats.mean_interval([1.0, 2.0, 3.0]), [2 - 2.4841377, 2 + 2.4841377], rtol=1e-7)
  # N = 5: mean 3, std sqrt(2.5), t_{0.975, 4} = 2.776445: 3 -+ 2.776445 * sqrt(2.5 / 5) = 3 -+ 1.963243
  np.testing.assert_allclose(stats.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0]), [3 - 1.9632432, 3 + 1.9632432],
                             rtol=1e-7)
  x = np.random.default_rng(1).normal(10.0, 2.0, 7)
  for level in (0.9, 0.95, 0.99):
    want = scipy.stats.t.interval(level, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    np.testing.assert_allclose(stats.mean_interval(x, level), want, rtol=1e-12)
  assert stats.mean_interval([2.5, 2.5, 2.5]) == (2.5, 2.5)
  with pytest.raises(ValueError, match="at least 2"):
    stats.mean_interval([1.0])
  with pytest.raises(ValueError, match="level"):
    stats.mean_interval([1.0, 2.0], level=95)


def test_summary_keeps_spreads_keys():
  s = stats.summary([1.0, 2.0, 3.0, 4.0])
  assert set(s) == {"n", "mean", "std", "min", "max", "ci95"}  # study.spread's keys
  assert (s["n"], s["mean"], s["min"], s["max"]) == (4, 2.5, 1.0, 4.0)
  assert s["std"] == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
  assert s["ci95"] == list(stats.mean_interval([1.0, 2.0, 3.0, 4.0]))
  assert json.loads(json.dumps(s)) == s  # plain floats: study.json takes it as it is
  assert "ci90" in stats.summary([1.0, 2.0], level=0.9) and stats.ci_key(0.999) == "ci99.9"
  with pytest.raises(ValueError):
    stats.summary([1.0])


def test_paired_interval_by_hand_and_scipy():
  a = np.array([10.0, 12.0, 11.0, 13.0])  # baseline
  b = np.array([11.0, 14.0, 11.5, 14.0])  # variant, the same seeds pair by pair
  c = stats.paired_comparison(a, b)
  # d = b - a = [1, 2, 0.5, 1]: mean 1.125, std sqrt(1.1875 / 3), t_{0.975, 3} = 3.182446
  half = 3.1824463 * math.sqrt(1.1875 / 3) / 2
  assert c["diff"] == 1.125 and c["n"] == 4 and c["interval"] == "paired t"
  assert c["std"] == pytest.approx(math.sqrt(1.1875 / 3), rel=1e-12)
  np.testing.assert_allclose(c["ci95"], [1.125 - half, 1.125 + half], rtol=1e-7)
  np.testing.assert_allclose(c["ci95"], scipy.stats.ttest_rel(b, a).confidence_interval(0.95), rtol=1e-12)
  # the direction: variant minus baseline
  assert stats.paired_comparison(b, a)["diff"] == -1.125
  with pytest.raises(ValueError, match="paired"):
    stats.paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0])


def test_sign_flip_p_by_hand():
  # N = 3, d = [1, 2, 4]: the 8 signed sums are +-7, +-5, +-3, +-1; |sum| >= 7 for 2 of them
  assert stats.sign_flip_p([1.0, 2.0, 4.0]) == 2 / 8
  assert stats.sign_flip_p([-1.0, -2.0, -4.0]) == 2 / 8
  assert stats.sign_flip_p([1.0, 2.0, -4.0]) == 1.0  # |sum| = 1: every pattern is as extreme
  assert stats.sign_flip_p([4.0, -2.0, 1.0]) == 6 / 8  # |sum| = 3: 7, 5, 3 and their negatives
  # ties: d = [3, -1, 1], sums +-5, +-3, +-3, +-1: |sum| >= 3 for 6 of 8 (both 3s count)
  assert stats.sign_flip_p([3.0, -1.0, 1.0]) == 6 / 8
  # ties up to rounding: 0.1 + 0.2 != 0.3 in floats, yet the count is that of the integers [1, 2, -3, 3]: |sum|
  # = 3; the last two signs give +-6 (4 patterns each, all >= 3) or 0 (2 ways x the 2 of +-1 +-2 that reach 3)
  assert stats.sign_flip_p([0.1, 0.2, -0.3, 0.3]) == stats.sign_flip_p([1.0, 2.0, -3.0, 3.0]) == 12 / 16
  # zeros are kept and change nothing: p of [0, 2, 3, 0] (16 patterns) = p of [2, 3] (sums +-5, +-1) = 2/4
  assert stats.sign_flip_p([0.0, 2.0, 3.0, 0.0]) == stats.sign_flip_p([2.0, 3.0]) == 0.5
  assert stats.sign_flip_p([0.0, 0.0, 0.0]) == 1.0
  # batched rows
  np.testing.assert_array_equal(stats.sign_flip_p(np.array([[1.0, 2.0, 4.0], [3.0, -1.0, 1.0]])), [0.25, 0.75])


def test_sign_flip_p_equals_scipys_exact_permutation_test():
  rng = np.random.default_rng(2)
  for n in (5, 8, 11):
    d = rng.normal(0.3, 1.0, n)
    want = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                        alternative="two-sided").pvalue
    assert stats.sign_flip_p(d) == pytest.approx(want, rel=1e-12)


def test_sign_flip_monte_carlo_is_close_to_exact():
  d = np.random.default_rng(3).normal(0.5, 1.0, 14)
  exact = stats.sign_flip_p(d)
  mc = stats.sign_flip_p(d, exact_max_n=10)  # 100,000 random patterns from seed 0
  assert exact == pytest.approx(0.41443, abs=1e-5)  # 6790 of the 2^14 patterns
  assert abs(mc - exact) < 4 * math.sqrt(exact * (1 - exact) / stats.SIGN_FLIP_RESAMPLES)
  assert mc == stats.sign_flip_p(d, exact_max_n=10)  # a fixed seed
  big = stats.paired_comparison(np.zeros(30), np.full(30, 1.0) + np.linspace(0, 0.1, 30))
  assert big["p"] == 1 / (1 + stats.SIGN_FLIP_RESAMPLES) == big["min_p"]  # above N = 20: Monte Carlo


def test_paired_comparison_min_p_and_too_small():
  # N = 3: the smallest two-sided p is 2 / 8 = 0.25 even when every seed improves
  c = stats.paired_comparison([1.0, 2.0, 3.0], [2.0, 3.5, 4.25])
  assert (c["p"], c["min_p"], c["too_small"]) == (0.25, 0.25, True)
  assert c["verdict"].startswith("N too small for a claim")
  # N = 5: 2 / 32 = 0.0625 > 0.05, still too small; N = 6: 2 / 64 = 0.03125 can be significant
  assert stats.paired_comparison(np.zeros(5), np.arange(1.0, 6.0))["too_small"]
  c6 = stats.paired_comparison(np.zeros(6), np.arange(1.0, 7.0))
  assert (c6["p"], c6["min_p"], c6["too_small"]) == (2 / 64, 2 / 64, False)
  assert c6["verdict"].startswith("variant differs from baseline")
  c6n = stats.paired_comparison(np.zeros(6), [1.0, -2.0, 3.0, -4.0, 5.0, -6.0])
  assert c6n["p"] > 0.05 and c6n["verdict"].startswith("no significant difference")
  # zero differences do not count towards N: [0, 0, 1, 2, 3, 4, 5, 6] can still reach 2/64, not 2/256
  c8 = stats.paired_comparison(np.zeros(8), [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
  assert (c8["p"], c8["min_p"]) == (2 / 64, 2 / 64)
  # 25 pairs, 5 of them equal: 20 nonzero differences, still the exact test
  c25 = stats.paired_comparison(np.zeros(25), np.r_[np.zeros(5), np.arange(1.0, 21.0)])
  assert (c25["p"], c25["min_p"]) == (2 / 2 ** 20, 2 / 2 ** 20)
  c0 = stats.paired_comparison([1.0, 2.0], [1.0, 2.0])
  assert (c0["p"], c0["min_p"], c0["too_small"]) == (1.0, 1.0, True)
  assert json.loads(json.dumps(c6)) == c6


def test_bootstraps_equal_scipys():
  # integer-valued data: every resample mean is exact in float64, so the ties BCa counts are the same as scipy's
  x = np.array([3.0, 7.0, 1.0, 4.0, 4.0, 9.0, 2.0, 6.0])
  for ours, theirs in (("bca", "BCa"), ("percentile", "percentile")):
    want = scipy.stats.bootstrap((x,), np.mean, n_resamples=2000, method=theirs, rng=np.random.default_rng(0))
    got = stats.bootstrap_interval(x, method=ours, resamples=2000, seed=0)
    np.testing.assert_allclose(got, [want.confidence_interval.low, want.confidence_interval.high], rtol=1e-12)


# ----------------------------------------------------------------------------- coverage


def old_spread_ci95(values, seed=0):
  """study.spread's interval before gantx.stats (its formula copied as it was): the baseline being replaced."""
  x = np.asarray(values, np.float64)
  means = x[np.random.default_rng(seed).integers(0, len(x), (10_000, len(x)))].mean(axis=1)
  return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def old_spread_rows(x, level):
  """old_spread_ci95 of every row of x at once, up to rounding: its seed is fixed, so every row gets the same
  10,000 resamples; their means are a product with the resamples' counts (faster than gathering)."""
  n = x.shape[1]
  idx = np.random.default_rng(0).integers(0, n, (10_000, n))
  counts = (idx[:, :, None] == np.arange(n)).sum(axis=1) / n
  means = x @ counts.T
  return np.percentile(means, 2.5, axis=1), np.percentile(means, 97.5, axis=1)


def test_t_interval_covers_95_percent_for_normal_and_typical_skew():
  # measured: normal 95.1 94.7 94.9, gamma 4 93.6 93.2 93.9, lognormal 0.25 94.2 94.0 94.5 (N = 3, 5, 10)
  for name, sampler in TYPICAL.items():
    for n in NS:
      c = stats.coverage(sampler, n, "t", trials=10_000, seed=0)
      assert 0.94 <= c <= 0.96 if name == "normal" else 0.93 <= c <= 0.96, (name, n, c)


def test_paired_t_interval_covers_95_percent():
  # a = s + noise_a, b = s + noise_b, s the seed's effect shared by the pair (it cancels in b - a)
  symmetric = stats.paired(stats.gamma(4.0), stats.gamma(4.0, 1.25), stats.normal(0.0, 3.0))  # d near symmetric
  skewed = stats.paired(stats.normal(0.0, 0.25), stats.gamma(4.0), stats.normal(0.0, 3.0))  # d skewness 0.98
  # measured: symmetric 95.5 95.0 94.8, skewed 93.8 93.5 93.6 (N = 3, 5, 10)
  for n in NS:
    assert 0.94 <= stats.coverage(symmetric, n, "t") <= 0.96, n
    assert 0.93 <= stats.coverage(skewed, n, "t") <= 0.96, n
  assert symmetric.mean == pytest.approx(1.0) and skewed.mean == 4.0


def test_t_interval_undercovers_strongly_skewed_data():
  """Not 95%, and no interval here reaches it: the measured coverage of the t interval for exponential data
  (skewness 2) and lognormal sigma 1 (skewness 6.2), recorded so that a change shows."""
  measured = {"exponential": (stats.gamma(1.0), (0.880, 0.881, 0.899)),
              "lognormal 1": (stats.lognormal(1.0), (0.840, 0.823, 0.837))}
  for name, (sampler, want) in measured.items():
    for n, w in zip(NS, want):
      assert stats.coverage(sampler, n, "t") == pytest.approx(w, abs=0.01), (name, n)


def test_old_percentile_bootstrap_undercovers():
  for n in NS:
    x = np.random.default_rng(5).normal(0.0, 1.0, (4, n))
    np.testing.assert_allclose(np.transpose(old_spread_rows(x, 0.95)), [old_spread_ci95(row) for row in x],
                               rtol=1e-12)
    if n == 3:  # at N = 3 it is [min, max] (up to the rounding of (x + x + x) / 3)
      np.testing.assert_allclose(np.transpose(old_spread_rows(x, 0.95)), np.transpose([x.min(1), x.max(1)]),
                                 rtol=1e-14)
  # P(min <= mean <= max) = 1 - 2 / 2^3 = 75% for a symmetric distribution at N = 3
  # measured (2,000 trials): N = 3 75.9, N = 5 83.7, N = 10 90.3 for normal data; t: 95.1 94.7 94.9 (10,000)
  c = {n: stats.coverage(TYPICAL["normal"], n, old_spread_rows, trials=2_000) for n in NS}
  assert 0.72 <= c[3] < 0.78 and c[5] < 0.87 and c[10] < 0.92, c


def test_bca_and_studentized_bootstrap_at_small_n():
  """The measurement behind the paired interval's choice (full table in gantx/stats.py's docstring)."""
  normal = TYPICAL["normal"]
  x = normal.draw(np.random.default_rng(0), (2_000, 3))
  # N = 3: BCa lies inside [min, max] (below 75%); the studentized interval is infinite in every trial
  low, high = stats.intervals(x, 0.95, "bca", resamples=500)
  assert np.all((low >= x.min(axis=1) - 1e-12) & (high <= x.max(axis=1) + 1e-12))
  assert stats.coverage(normal, 3, "bca", trials=2_000, resamples=500) < 0.75
  low, high = stats.intervals(x, 0.95, "studentized", resamples=500)
  assert np.all(np.isneginf(low) & np.isposinf(high))
  # measured (2,000 trials, 500 resamples): BCa 72.9 at N = 3, 89.7 at N = 10;
  # studentized at N = 5 covers like t (94.7) but is 1.29x wider (median)
  assert stats.coverage(normal, 10, "bca", trials=2_000, resamples=500) < 0.92
  x5 = normal.draw(np.random.default_rng(0), (2_000, 5))
  low, high = stats.intervals(x5, 0.95, "studentized", resamples=500)
  tlow, thigh = stats.intervals(x5, 0.95, "t")
  assert 0.93 <= stats.coverage(normal, 5, "studentized", trials=2_000, resamples=500) <= 0.97
  assert 1.15 < np.median((high - low) / (thigh - tlow)) < 1.45


@pytest.mark.parametrize("n", [6, 10])
def test_sign_flip_p_is_valid_under_the_null(n):
  """Symmetric differences around 0: P(p <= 0.05) <= 0.05 (the exact test's is 1/32 at N = 6, 50/1024 at 10)."""
  rng = np.random.default_rng(n)
  trials = 10_000
  tolerance = 3 * math.sqrt(0.05 * 0.95 / trials)
  for d in (rng.normal(0.0, 1.0, (trials, n)), rng.laplace(0.0, 1.0, (trials, n)),
            rng.gamma(4.0, 1.0, (trials, n)) - rng.gamma(4.0, 1.0, (trials, n))):
    p = stats.sign_flip_p(d)
    assert np.mean(p <= 0.05) <= 0.05 + tolerance
  exact = {6: 2 / 64, 10: 50 / 1024}[n]  # the largest attainable p <= 0.05, which is the exact size
  assert np.mean(p <= 0.05) == pytest.approx(exact, abs=tolerance)


def test_coverage_is_deterministic_and_vectorized():
  assert stats.coverage(stats.gamma(4.0), 5, "t", seed=7) == stats.coverage(stats.gamma(4.0), 5, "t", seed=7)
  # a callable method gets all trials at once
  seen = []

  def t_rows(x, level):
    seen.append(x.shape)
    return stats.intervals(x, level, "t")

  normal = TYPICAL["normal"]
  assert stats.coverage(normal, 4, t_rows, trials=500) == stats.coverage(normal, 4, "t", trials=500)
  assert seen == [(500, 4)]
