"""Small-sample statistics for seed studies: intervals of a mean, paired comparisons, their coverage.

A seed study has N = 3..10 replicas of one run; a comparison of two variants pairs replica k of the
baseline with replica k of the variant (the same seeds). Everything here is float64 numpy/scipy on
the host and deterministic: the bootstraps and the Monte Carlo sign-flip test draw from fixed seeds.

- `mean_interval`: Student's t interval of the mean. Exact (coverage = level) for normal data at any
  N >= 2; for skewed data it undercovers a little at N = 3..10 (see `coverage` and the table below).
- `summary`: n, mean, std, min, max and the t interval: the fields of a study's report.
- `paired_comparison`: variant minus baseline, per seed: the mean difference, its paired t interval,
  and the exact two-sided sign-flip permutation p-value, with the smallest p-value the test can give
  at this N and whether N is too small for any claim at the level.
- `bootstrap_interval`: percentile, BCa and studentized (bootstrap-t) intervals of the mean, kept to
  measure them against the t interval.
- `coverage`: the simulation harness: the share of synthetic samples whose interval contains the true
  mean, all trials at once (`intervals` of every row of a (trials, N) array), with the samplers `normal`,
  `gamma`, `lognormal` and `paired` (pairs sharing a seed effect, for the paired interval).

Why the t interval and not a bootstrap, measured with `coverage` (10,000 trials, seed 0, 2,000
resamples; coverage in %, nominal 95, Monte Carlo error +-0.2; width: the median ratio of the
interval's width to the t interval's on the same samples). "gamma 4": gamma with shape 4 (skewness 1),
"lognormal 0.25" skewness 0.78, "exponential" skewness 2, "lognormal 1" skewness 6.2. "pairs,
symmetric d": a = s + gamma(4), b = s + gamma(4, scale 1.25), s ~ normal(0, 3) shared by the pair;
"pairs, d gamma 4": a = s + normal(0, 0.25), b = s + gamma(4): differences with skewness 0.98.

  method       distribution          coverage N=3   N=5   N=10    width/t N=3  N=5  N=10
  t            normal                        95.1  94.7  94.9            1     1     1
  t            gamma 4                       93.6  93.2  93.9            1     1     1
  t            lognormal 0.25                94.2  94.0  94.5            1     1     1
  t            exponential                   88.0  88.1  89.9            1     1     1
  t            lognormal 1                   84.0  82.3  83.7            1     1     1
  t            pairs, symmetric d            95.5  95.0  94.8            1     1     1
  t            pairs, d gamma 4              93.8  93.5  93.6            1     1     1
  percentile   normal                        75.1  83.5  89.9         0.39  0.62  0.81
  percentile   exponential                   69.5  78.3  85.9         0.38  0.61  0.81
  BCa          normal                        72.2  83.7  89.7         0.35  0.63  0.82
  BCa          gamma 4                       71.4  83.1  89.5         0.35  0.63  0.83
  BCa          exponential                   67.7  79.8  87.4         0.35  0.64  0.84
  BCa          pairs, symmetric d            72.3  82.2  88.3         0.35  0.63  0.82
  BCa          pairs, d gamma 4              70.7  82.5  89.1         0.35  0.63  0.83
  studentized  normal                       100.0  94.6  94.6          inf  1.28  1.03
  studentized  gamma 4                      100.0  94.2  94.7          inf  1.34  1.05
  studentized  exponential                  100.0  92.6  94.0          inf  1.49  1.16
  studentized  pairs, symmetric d           100.0  94.3  93.7          inf  1.27  1.03
  studentized  pairs, d gamma 4             100.0  94.0  94.3          inf  1.32  1.05

A percentile or BCa interval lies inside the bootstrap distribution of the mean, i.e. inside
[min, max] of the sample, which at N = 3 contains the true mean of a symmetric distribution with
probability 1 - 2 (1/2)^3 = 75%: no percentile-type bootstrap can reach 95% there, and BCa's
corrections, estimated from 3 points, make it worse (72%); it stays below 90% up to N = 10. The
studentized bootstrap is the better of the two: it divides by the resamples' standard deviations,
0 for the resamples that repeat one value (3 of 27 at N = 3, more than the 2.5% tail), so at N = 3
its interval is (-inf, inf) in every trial; at N = 5 it covers like the t interval but is ~1.3x
wider (its 90th percentile 2-4x); at N = 10 it matches t, and gains 4 points over t for exponential
data (94.0 vs 89.9). For seed-to-seed noise (mild skew) it buys nothing at N = 3..10, so the paired
interval is the t interval of the differences. The differences of a pair are close to symmetric
whenever the two variants' seed noise has a similar shape (the shared part cancels), which is where
the t interval is at its best. Strongly skewed data (exponential, lognormal 1) undercover with every
method at N <= 10: 84-90% for t.
Refs: Efron & Tibshirani, An Introduction to the Bootstrap (1993), ch. 12-14 (bootstrap-t, BCa) and
ch. 13.7 on small samples; DiCiccio & Efron, Bootstrap confidence intervals, Stat. Sci. 11 (1996).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import scipy.special
import scipy.stats

LEVEL = 0.95
BOOTSTRAP_METHODS = ("percentile", "bca", "studentized")
METHODS = ("t",) + BOOTSTRAP_METHODS
EXACT_SIGN_FLIP_MAX_N = 20  # 2^20 sign patterns, 8 MiB of sums: enumerated; above, Monte Carlo
SIGN_FLIP_RESAMPLES = 100_000  # the Monte Carlo sign-flip test's patterns above EXACT_SIGN_FLIP_MAX_N

Interval = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def ci_key(level: float = LEVEL) -> str:
  """The name of an interval at `level` in a report's dict: "ci95" at 0.95, "ci90", "ci99.9"."""
  return f"ci{100 * level:.10g}"


def _sample(values: Sequence[float] | np.ndarray, name: str = "values", min_n: int = 2) -> np.ndarray:
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or len(x) < min_n:
    raise ValueError(f"{name}: a 1-D sequence of at least {min_n} numbers is needed, got shape {x.shape}.")
  return x


def _check_level(level: float) -> None:
  if not 0.0 < level < 1.0:
    raise ValueError(f"level {level}: a confidence level is in (0, 1), e.g. 0.95.")


# ----------------------------------------------------------------------------- the t interval


def _t_bounds(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
  """Student's t interval of the mean of each row of x (..., n): mean -+ t_{(1+level)/2, n-1} s / sqrt(n)."""
  n = x.shape[-1]
  m = x.mean(axis=-1)
  half = scipy.stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis=-1, ddof=1) / math.sqrt(n)
  return m - half, m + half


def mean_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
  """Student's t interval of the mean: mean -+ t_{(1+level)/2, N-1} * std(ddof=1) / sqrt(N).

  Assumes the N values are independent draws from one distribution (replicas that differ in their
  seeds). Exact for normal data at any N >= 2: it contains the true mean with probability `level`.
  For skewed data it is approximate: measured at N = 3..10, 93.2-93.9% for gamma(shape 4) (skewness 1),
  94.0-94.5% for lognormal(sigma 0.25), 88-90% for the exponential (skewness 2), 82-84% for lognormal
  (sigma 1, skewness 6.2); see the module docstring.
  It is wide at small N (t_{0.975, 2} = 4.30, so at N = 3 the half-width is 2.5 standard deviations):
  that is the price of 95% from 3 numbers. N = 1 raises ValueError; N values all equal give [m, m];
  a non-finite value gives a non-finite interval. Ref: Student, The probable error of a mean,
  Biometrika 6 (1908); = scipy.stats.t.interval(level, N - 1, mean, sem).
  """
  _check_level(level)
  low, high = _t_bounds(_sample(values), level)
  return float(low), float(high)


def summary(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> dict[str, float | int | list[float]]:
  """n, mean, std (ddof 1), min, max and the t interval of the mean (`mean_interval`) of N >= 2 values.

  The replacement of `study.spread`: the same keys (n, mean, std, min, max, and the interval as
  "ci95" at level 0.95, `ci_key(level)` at other levels, a [low, high] list), so readers of
  study.json keep working; only the interval's method changes, from a percentile bootstrap (which
  is [min, max] at N = 3 and covers ~75% there) to Student's t (95% for normal data at any N).
  Plain floats: the dict goes to JSON as it is. N = 1 raises ValueError (a study has >= 2 replicas).
  """
  _check_level(level)
  x = _sample(values)
  low, high = mean_interval(x, level)
  return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)), "min": float(x.min()),
          "max": float(x.max()), ci_key(level): [low, high]}


# ----------------------------------------------------------------------------- bootstraps


def _resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
  """(resamples, n) float counts: how often each of n values is drawn in each resample with
  replacement (the indices of rng.integers(0, n, (resamples, n)), as scipy.stats.bootstrap draws)."""
  idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
  counts = np.zeros((resamples, n))
  np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
  return counts


def _row_quantiles(sorted_rows: np.ndarray, q: np.ndarray | float) -> np.ndarray:
  """Quantile q (per row, or one for all) of each sorted row, linear interpolation as np.quantile's
  default; an infinite neighbour gives an infinite quantile (not nan)."""
  b = sorted_rows.shape[-1]
  pos = np.broadcast_to(np.asarray(q, np.float64) * (b - 1), sorted_rows.shape[:-1])
  lo_i = np.clip(np.floor(pos).astype(np.int64), 0, b - 1)
  hi_i = np.clip(lo_i + 1, 0, b - 1)
  frac = pos - lo_i
  lo = np.take_along_axis(sorted_rows, lo_i[..., None], axis=-1)[..., 0]
  hi = np.take_along_axis(sorted_rows, hi_i[..., None], axis=-1)[..., 0]
  with np.errstate(invalid="ignore"):
    out = lo + (hi - lo) * frac
  out = np.where(np.isneginf(lo), -np.inf, out)
  out = np.where(np.isposinf(hi) & (frac > 0), np.inf, out)
  return np.where(frac == 0, lo, out)


def _bootstrap_bounds(x: np.ndarray, level: float, method: str, counts: np.ndarray,
                      chunk_elements: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
  """Bootstrap interval of the mean of each row of x (T, n), from the resample counts (B, n): the
  resample means and sums of squares are matrix products (the data centred first, for accuracy)."""
  t, n = x.shape
  b = counts.shape[0]
  lows, highs = np.empty(t), np.empty(t)
  alpha = (1.0 - level) / 2
  step = max(1, chunk_elements // b)
  for start in range(0, t, step):
    xs = x[start:start + step]
    m = xs.mean(axis=1)
    xc = xs - m[:, None]
    mb = xc @ counts.T / n  # (T, B): resample mean minus the sample mean
    scale = np.abs(xc).max(axis=1, initial=0.0)[:, None]
    tol = 1e-12 * scale  # resamples that repeat the sample's multiset tie with it up to rounding
    if method == "percentile":
      s = np.sort(mb, axis=1)
      low, high = _row_quantiles(s, alpha), _row_quantiles(s, 1 - alpha)
    elif method == "bca":
      below = ((mb < -tol).sum(axis=1) + (mb <= tol).sum(axis=1)) / (2 * b)  # mid-rank, as scipy
      z0 = scipy.special.ndtri(np.clip(below, 0.5 / b, 1 - 0.5 / b))
      # jackknife acceleration: the leave-one-out means deviate from their mean by -xc / (n - 1)
      u = xc / (n - 1)
      with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.nan_to_num((u ** 3).sum(axis=1) / (6 * (u ** 2).sum(axis=1) ** 1.5))
      s = np.sort(mb, axis=1)
      bounds = []
      for z in (scipy.special.ndtri(alpha), scipy.special.ndtri(1 - alpha)):
        q = scipy.special.ndtr(z0 + (z0 + z) / (1 - acc * (z0 + z)))
        bounds.append(_row_quantiles(s, q))
      low, high = bounds
    elif method == "studentized":
      ss = (xc ** 2) @ counts.T
      sb = np.sqrt(np.clip(ss - n * mb ** 2, 0.0, None) / (n - 1))  # resample std (ddof 1)
      se = xc.std(axis=1, ddof=1) / math.sqrt(n)
      with np.errstate(invalid="ignore", divide="ignore"):
        tb = mb / (sb / math.sqrt(n))
      # a resample of one repeated value (one index, or tied values: std 0 up to the rounding of the
      # sums of squares, ~1e-8 relative): t* = +-inf, 0 if that value is the mean
      degenerate = ((counts > 0).sum(axis=1) == 1)[None] | (sb <= 1e-7 * scale)
      tb = np.where(degenerate, np.where(np.abs(mb) <= tol, 0.0, np.where(mb > 0, np.inf, -np.inf)), tb)
      s = np.sort(tb, axis=1)
      with np.errstate(invalid="ignore"):
        low = -_row_quantiles(s, 1 - alpha) * se
        high = -_row_quantiles(s, alpha) * se
      low, high = np.where(se == 0, 0.0, low), np.where(se == 0, 0.0, high)
    else:
      raise ValueError(f"bootstrap method {method!r}: one of {', '.join(BOOTSTRAP_METHODS)}.")
    lows[start:start + step], highs[start:start + step] = m + low, m + high
  return lows, highs


def bootstrap_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL, method: str = "bca",
                       resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
  """A bootstrap interval of the mean from `resamples` resamples with replacement drawn from `seed`.

  - "percentile": the (1 -+ level)/2 quantiles of the resample means (study.spread's old interval).
  - "bca": bias-corrected and accelerated percentiles (Efron 1987; Efron & Tibshirani 1993, 14.3):
    z0 from the share of resample means below the mean (ties counted half, as scipy), the
    acceleration from the jackknife. With integer-exact data it equals scipy.stats.bootstrap's
    method="BCa" with rng=np.random.default_rng(seed) (the same resamples).
  - "studentized" (bootstrap-t, Efron & Tibshirani 1993, 12.5): mean - q*_{(1 +- level)/2} s/sqrt(N),
    q* the quantiles of (resample mean - mean) / (resample std / sqrt(N)); a resample repeating one
    value has std 0 and t* = +-inf, so at N = 3 the interval is (-inf, inf).
  Valid asymptotically (large N). At N = 3..10 all three undercover or are useless: prefer
  `mean_interval` there (measured in the module docstring).
  """
  _check_level(level)
  x = _sample(values)
  low, high = _bootstrap_bounds(x[None], level, method, _resample_counts(len(x), resamples, seed))
  return float(low[0]), float(high[0])


# ----------------------------------------------------------------------------- paired comparison


def sign_flip_p(differences: Sequence[float] | np.ndarray, resamples: int = SIGN_FLIP_RESAMPLES, seed: int = 0,
                exact_max_n: int = EXACT_SIGN_FLIP_MAX_N) -> float | np.ndarray:
  """Two-sided sign-flip permutation p-value of the mean of paired differences (one per row of an
  (..., N) array: an array of p-values; a 1-D sequence: a float).

  Null hypothesis: each difference is symmetric around 0 (exchangeable variant and baseline within a
  seed), so flipping the sign of any subset is as likely as the observed signs. p = the share of the
  2^N sign patterns s (the observed one included) with |sum s_i d_i| >= |sum d_i| (up to rounding,
  1e-9 of sum |d_i|). The statistic |mean| orders patterns as |t| does (sum d_i^2 does not change
  with the signs), so this is the exact permutation version of the paired t test; no normality is
  assumed. Exact (all 2^N patterns) for N <= `exact_max_n` (20); above, `resamples` random patterns
  drawn from `seed`, p = (1 + count) / (1 + resamples) (the observed pattern counted, so under the
  null P(p <= alpha) <= alpha holds for the Monte Carlo p as well: Phipson & Smyth, Permutation
  p-values should never be zero, Stat. Appl. Genet. Mol. Biol. 9 (2010)). A batch of rows costs
  rows x 2^N floats: fine for 10,000 rows at N = 10, one row at N = 20.
  Zero differences are kept: flipping a zero changes nothing, so each pattern of the nonzero
  differences is counted 2^(zeros) times and p equals the test on the nonzero differences alone;
  all differences zero gives p = 1. Under the null, P(p <= alpha) <= alpha at every N.
  Equals scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=inf)
  (its two-sided p = 2 min(one-sided ps), the same for this symmetric null distribution).
  Ref: Fisher, The Design of Experiments (1935), 21; Good, Permutation Tests (2000), 3.1.
  """
  d = np.asarray(differences, np.float64)
  if d.ndim == 0 or d.shape[-1] < 1:
    raise ValueError(f"differences: at least 1 number per row is needed, got shape {d.shape}.")
  n = d.shape[-1]
  observed = np.abs(d.sum(axis=-1))
  tol = 1e-9 * np.abs(d).sum(axis=-1)
  if n <= exact_max_n:
    sums = np.zeros(d.shape[:-1] + (1,))
    for i in range(n):  # all 2^N signed sums, doubling: sums of the first i, with +d_i and -d_i
      di = d[..., i:i + 1]
      sums = np.concatenate([sums + di, sums - di], axis=-1)
    p = (np.abs(sums) >= (observed - tol)[..., None]).mean(axis=-1)
  else:
    rng = np.random.default_rng(seed)
    count = np.zeros(d.shape[:-1])
    for start in range(0, resamples, 10_000):
      signs = rng.integers(0, 2, (min(10_000, resamples - start), n)) * 2.0 - 1.0
      count += (np.abs(d @ signs.T) >= (observed - tol)[..., None]).sum(axis=-1)
    p = (1.0 + count) / (1.0 + resamples)
  return float(p) if p.ndim == 0 else p


def paired_comparison(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      level: float = LEVEL) -> dict[str, float | int | bool | str | list[float]]:
  """Variant `b` against baseline `a`, paired by seed: a[k] and b[k] are replica k of each (same seeds).

  The differences are d = b - a (variant minus baseline): "diff" > 0 means the variant's metric is
  higher (better for PSNR/SSIM, worse for L1/FID/KID). Returns
    n          N pairs (>= 2)
    diff       mean(d);  std: std(d, ddof 1)
    ci95       the paired t interval of the mean difference (`mean_interval` of d; key `ci_key(level)`),
               = scipy.stats.ttest_rel(b, a).confidence_interval(level). Exact when d is normal; the
               paired design removes the seed-to-seed variation the two share. Chosen over BCa and
               the studentized bootstrap by measured coverage (module docstring).
    p          two-sided sign-flip permutation p-value (`sign_flip_p` of the nonzero differences, the
               same p as of all of them): exact for up to 20 nonzero differences, Monte Carlo above
    min_p      the smallest p the test can give here: 2 / 2^m, m = the number of nonzero differences
               (= 2 / 2^N when none is zero), 1 when all are zero; 1 / (1 + resamples) if m > 20
    too_small  min_p > 1 - level: no outcome can be significant (two-sided at 0.05: N < 6)
    verdict    one line for a report: "N too small for a claim ...", or significant or not, at 1 - level
  The t interval and the sign-flip test answer the same question with different assumptions; at
  small N they can disagree near the boundary (the verdict follows p). The pairs are assumed
  independent of each other (different seeds); a and b within a pair may be correlated.
  """
  _check_level(level)
  a, b = _sample(a, "a"), _sample(b, "b")
  if a.shape != b.shape:
    raise ValueError(f"a and b are paired by seed: the same number of values is needed, got {len(a)} and {len(b)}.")
  d = b - a
  n = len(d)
  alpha = 1.0 - level
  low, high = mean_interval(d, level)
  nonzero = int(np.count_nonzero(d))
  p = sign_flip_p(d[d != 0]) if nonzero else 1.0  # = sign_flip_p(d), and exact while the nonzero are <= 20
  if nonzero == 0:
    min_p = 1.0
  elif nonzero <= EXACT_SIGN_FLIP_MAX_N:
    min_p = 2.0 / 2 ** nonzero
  else:
    min_p = 1.0 / (1 + SIGN_FLIP_RESAMPLES)
  too_small = min_p > alpha
  if too_small:
    verdict = (f"N too small for a claim: with {nonzero} nonzero paired differences the smallest possible"
               f" two-sided p-value is {min_p:.3g} > {alpha:.3g}")
  elif p <= alpha:
    verdict = f"variant differs from baseline: mean difference {d.mean():.4g}, p = {p:.3g} <= {alpha:.3g}"
  else:
    verdict = f"no significant difference: mean difference {d.mean():.4g}, p = {p:.3g} > {alpha:.3g}"
  return {"n": n, "diff": float(d.mean()), "std": float(d.std(ddof=1)), ci_key(level): [low, high],
          "interval": "paired t", "p": float(p), "min_p": min_p, "too_small": bool(too_small), "verdict": verdict}


# ----------------------------------------------------------------------------- coverage


class Sampler(NamedTuple):
  """Synthetic data for `coverage`: draw(rng, shape) -> values of that shape, and their true mean.
  A paired sampler's draw returns (a, b), each of that shape, and `mean` is the true mean of b - a."""
  draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray | tuple[np.ndarray, np.ndarray]]
  mean: float
  paired: bool = False
  name: str = ""


def normal(mean: float = 0.0, std: float = 1.0) -> Sampler:
  return Sampler(lambda rng, shape: rng.normal(mean, std, shape), mean, name=f"normal({mean:g}, {std:g})")


def gamma(shape: float, scale: float = 1.0) -> Sampler:
  """Gamma(shape, scale): skewness 2 / sqrt(shape) (shape 4: 1; shape 1 is the exponential: 2)."""
  return Sampler(lambda rng, s: rng.gamma(shape, scale, s), shape * scale, name=f"gamma({shape:g}, {scale:g})")


def lognormal(sigma: float, mu: float = 0.0) -> Sampler:
  """exp(normal(mu, sigma)): skewness (e^s2 + 2) sqrt(e^s2 - 1), s2 = sigma^2 (sigma 0.25: 0.78; 1: 6.2)."""
  return Sampler(lambda rng, s: rng.lognormal(mu, sigma, s), math.exp(mu + sigma ** 2 / 2),
                 name=f"lognormal({mu:g}, {sigma:g})")


def paired(baseline: Sampler, variant: Sampler, shared: Sampler | None = None) -> Sampler:
  """Pairs a = shared + baseline, b = shared + variant (shared: the seed's effect common to both, drawn
  once per pair; it cancels in b - a). True mean difference: variant.mean - baseline.mean."""
  def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    common = shared.draw(rng, shape) if shared is not None else 0.0
    return common + baseline.draw(rng, shape), common + variant.draw(rng, shape)
  return Sampler(draw, variant.mean - baseline.mean, paired=True, name=f"paired({baseline.name}, {variant.name})")


def intervals(x: np.ndarray, level: float = LEVEL, method: str | Interval = "t", resamples: int = 2_000,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The intervals of the mean of each row of x (T, n) by `method` ("t", "percentile", "bca",
  "studentized", or a callable (x, level) -> (low, high) arrays); the bootstraps share one set of
  `resamples` resamples drawn from `seed` across the rows."""
  x = np.asarray(x, np.float64)
  if callable(method):
    return method(x, level)
  if method == "t":
    return _t_bounds(x, level)
  return _bootstrap_bounds(x, level, method, _resample_counts(x.shape[-1], resamples, seed))


def coverage(sampler: Sampler, n: int, method: str | Interval = "t", trials: int = 10_000, seed: int = 0,
             level: float = LEVEL, resamples: int = 2_000) -> float:
  """The share of `trials` synthetic samples of size n (from `sampler`, drawn from `seed`) whose
  interval (`intervals` by `method`) contains the true mean: for a paired sampler, the share whose
  interval of the mean of b - a (the paired interval) contains the true mean difference.
  All trials at once, (trials, n) arrays. Monte Carlo error: sqrt(c (1 - c) / trials), 0.22 points at
  c = 95% and 10,000 trials. Deterministic: the data from `seed`, the bootstraps' resamples from it too.
  """
  rng = np.random.default_rng(seed)
  data = sampler.draw(rng, (trials, n))
  if sampler.paired:
    data = data[1] - data[0]
  low, high = intervals(data, level, method, resamples, seed)
  return float(np.mean((low <= sampler.mean) & (sampler.mean <= high)))
