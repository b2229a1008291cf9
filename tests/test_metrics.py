"""L1, PSNR, SSIM, FID and KID against closed forms and direct formulas."""

import numpy as np
import scipy.linalg
import pytest

from gantx import inception, metrics


def exact_gaussian_sample(mu, var):
  """8 rows whose sample mean is exactly mu and sample covariance (ddof 1) exactly diag(var):
  zero-mean, mutually orthogonal Hadamard columns, scaled."""
  h2 = np.array([[1, 1], [1, -1]])
  h8 = np.kron(np.kron(h2, h2), h2)[:, 1:1 + len(mu)]  # columns 1.. sum to zero
  return mu + h8 * np.sqrt(np.asarray(var) * 7 / 8)


# ----------------------------------------------------------------------------- image pairs


def test_psnr_ssim_l1_known_values():
  rng = np.random.default_rng(0)
  a = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  np.testing.assert_array_equal(metrics.psnr(a, a), [np.inf, np.inf])
  np.testing.assert_allclose(metrics.ssim(a, a), [1.0, 1.0], atol=1e-6)
  np.testing.assert_array_equal(metrics.l1(a, a), [0.0, 0.0])
  # +0.2 in [-1, 1] is +0.1 in [0, 1]: MSE 0.01, PSNR 20 dB.
  b = np.zeros((1, 16, 16, 3), np.float32)
  np.testing.assert_allclose(metrics.psnr(b, b + 0.2), [20.0], atol=1e-4)
  np.testing.assert_allclose(metrics.l1(b, b + 0.2), [0.2], rtol=1e-5)  # float32 mean
  # Flat images: no variance, so SSIM is the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
  m1, m2, c1 = 0.5, 0.75, 0.01**2
  np.testing.assert_allclose(metrics.ssim(b, b + 0.5), [(2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1)], rtol=1e-5)


# ----------------------------------------------------------------------------- FID


def test_frechet_distance_closed_form_diagonal():
  mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
  s1, s2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
  assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
  # The same through fid() on features whose sample statistics are exactly these.
  f1, f2 = exact_gaussian_sample(mu1, s1), exact_gaussian_sample(mu2, s2)
  assert metrics.fid(f1, f2) == pytest.approx(expected, rel=1e-10)


def test_fid_of_a_set_with_itself_is_zero_even_when_singular():
  feats = np.random.default_rng(0).normal(size=(40, 64))  # N < D: rank-39 covariance
  assert abs(metrics.fid(feats, feats)) < 1e-5


def test_fid_grows_with_a_mean_shift():
  rng = np.random.default_rng(1)
  feats, direction = rng.normal(size=(200, 8)), rng.normal(size=8)
  values = [metrics.fid(feats, feats + t * direction) for t in (0.0, 0.1, 0.5, 1.0, 3.0)]
  assert np.all(np.diff(values) > 0)
  # Same covariance: FID is exactly the squared shift.
  np.testing.assert_allclose(values, [t**2 * direction @ direction for t in (0.0, 0.1, 0.5, 1.0, 3.0)], atol=1e-6)


def test_trace_sqrt_product_equals_scipy_sqrtm():
  """The eigensolve route gives pytorch-fid's tr(sqrtm(s1 @ s2)), also for a singular s1."""
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(50, 20)), rng.normal(size=(8, 20)) * 2 + 1  # b: rank-7 covariance
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  for x, y in ((s1, s2), (s2, s1), (s1, s1)):
    assert metrics.trace_sqrt_product(x, y) == pytest.approx(np.trace(scipy.linalg.sqrtm(x @ y)).real, rel=1e-6)


def test_fid_rejects_mismatched_features():
  with pytest.raises(ValueError, match="fid"):
    metrics.fid(np.zeros((5, 3)), np.zeros((5, 4)))


# ----------------------------------------------------------------------------- KID


def direct_unbiased_mmd2(x, y):
  """The unbiased MMD^2 with the cubic polynomial kernel, term by term."""
  d, m = x.shape[1], len(x)
  k = lambda a, b: (a @ b / d + 1) ** 3
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return (xx + yy) / (m * (m - 1)) - 2 * xy / m**2


def test_kid_whole_sets_equals_direct_formula_and_caps_subset_size():
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
  mean, std = metrics.kid(x, y, num_subsets=3, subset_size=1000)  # capped to 12: every subset is the whole set
  assert mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-10)
  assert std == pytest.approx(0.0, abs=1e-12)
  mean, _ = metrics.kid(x, y[:7], num_subsets=4)  # capped to the smaller set
  assert np.isfinite(mean)


def test_kid_is_unbiased_and_detects_a_shift():
  """Averaged over many same-distribution draws of small sets the estimate is ~0, where the
  biased V-statistic (diagonal terms kept) sits far above 0; a mean shift makes it positive."""
  rng = np.random.default_rng(3)
  pairs = [(rng.normal(size=(10, 4)), rng.normal(size=(10, 4))) for _ in range(400)]
  same = [metrics.kid(x, y, num_subsets=1)[0] for x, y in pairs]
  sem = np.std(same) / np.sqrt(len(same))
  assert abs(np.mean(same)) < 3 * sem
  k = lambda a, b: (a @ b.T / 4 + 1) ** 3
  biased = [np.mean(k(x, x)) + np.mean(k(y, y)) - 2 * np.mean(k(x, y)) for x, y in pairs]
  assert np.mean(biased) > 20 * sem
  shifted, _ = metrics.kid(rng.normal(size=(200, 4)), rng.normal(1.0, 1.0, size=(200, 4)), num_subsets=20,
                           subset_size=100)
  assert shifted > 20 * sem


# ----------------------------------------------------------------------------- features


def test_inception_features_streams_batches():
  """An array and an iterable of batches (each zero-padded to batch_size) give the same
  features; a grayscale image is read as RGB with three equal channels."""
  variables = inception.random_inception_variables(0)
  images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 24, 1)).astype(np.float32)
  whole = metrics.inception_features(variables, images, batch_size=2)
  assert whole.shape == (2, 2048) and whole.dtype == np.float64 and np.all(np.isfinite(whole))
  streamed = metrics.inception_features(variables, iter([images[:1], images[1:]]), batch_size=2)
  np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)
  rgb = metrics.inception_features(variables, np.repeat(images, 3, axis=-1), batch_size=2)
  np.testing.assert_allclose(rgb, whole, rtol=0, atol=1e-5)
