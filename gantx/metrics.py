"""Image-quality metrics: L1, PSNR, SSIM and sharpness on image pairs; FID and KID on feature sets.

Images are NHWC in [-1, 1] (the generators' tanh range). PSNR and SSIM are dm-pix's on the
images mapped to [0, 1], so their data range (max value) is 1.0 there, i.e. 2.0 in [-1, 1]
units. L1 is in [-1, 1] units, like the pix2pix L1 loss.

FID and KID compare (N, 2048) Inception pool3 features from `inception_features`, which runs
pytorch-fid's network and preprocessing (`gantx.inception`). FID is pytorch-fid's
`calculate_frechet_distance` (its matrix square root taken by symmetric eigensolves); KID is the unbiased MMD^2 of Binkowski et al. (2018) with the
polynomial kernel, averaged over random subsets as in torch-fidelity and clean-fid. Both are
computed in float64 with numpy/scipy on the host.
"""

from __future__ import annotations

from typing import Iterable

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from gantx import inception

Array = jax.Array


# Held-out metrics are logged as <family>_<generator or domain> (L1_G, cycle_L1_A, ...): these are
# the families (gantx.evaluate computes them; the plots and study reports group by them).
FAMILIES = ("L1", "PSNR", "SSIM", "FID", "KID", "class_acc", "cycle_L1", "idt_L1", "sharpness")


# What "better" means for each family, to rank a study's variants: a lower or a higher value, or a
# value nearer 1 (sharpness: the output's gradient energy over the target's; blur is below 1,
# invented texture above).
BETTER = {"L1": "lower", "FID": "lower", "KID": "lower", "cycle_L1": "lower", "idt_L1": "lower",
          "PSNR": "higher", "SSIM": "higher", "class_acc": "higher", "sharpness": "nearer 1"}


def rank_key(name: str, value: float) -> float:
  """Sort key of a metric's value, best first (`BETTER`)."""
  better = BETTER[family(name)]
  return value if better == "lower" else -value if better == "higher" else abs(value - 1.0)


def family(name: str) -> str | None:
  """The held-out metric family of a logged name ('cycle_L1_A' -> 'cycle_L1'), None for a loss."""
  return next((f for f in sorted(FAMILIES, key=len, reverse=True) if name.startswith(f + "_")), None)


# ----------------------------------------------------------------------------- image pairs


def _unit(x: Array) -> Array:
  return (jnp.asarray(x, jnp.float32) + 1.0) / 2.0  # [-1, 1] -> [0, 1]


@jax.jit
def l1(a: Array, b: Array) -> Array:
  """Mean |a - b| per image, in [-1, 1] units: (N, H, W, C) x2 -> (N,)."""
  return jnp.mean(jnp.abs(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32)), axis=(1, 2, 3))


@jax.jit
def psnr(a: Array, b: Array) -> Array:
  """PSNR in dB per image: (N, H, W, C) x2 in [-1, 1] -> (N,).

  -10 log10(MSE) of the images mapped to [0, 1] (max value 1.0 there). Identical images give
  +inf; average over a set with that in mind.
  """
  return dm_pix.psnr(_unit(a), _unit(b))


@jax.jit
def ssim(a: Array, b: Array) -> Array:
  """Mean SSIM per image: (N, H, W, C) x2 in [-1, 1] -> (N,); H and W at least 11.

  dm-pix's (= tf.image.ssim): 11x11 Gaussian window with sigma 1.5, k1 = 0.01, k2 = 0.03, on
  the images mapped to [0, 1] with max_val 1.0, each channel on its own, averaged over the
  valid (unpadded) window positions and the channels.
  """
  return dm_pix.ssim(_unit(a), _unit(b), max_val=1.0)


@jax.jit
def gradient_energy(x: Array) -> Array:
  """Mean squared difference of neighbouring pixels, down and across, every channel, per image:
  (N, H, W, C) in [-1, 1] -> (N,). The image's high-frequency energy: blur lowers it."""
  x = jnp.asarray(x, jnp.float32)
  return (jnp.mean(jnp.square(x[:, 1:] - x[:, :-1]), axis=(1, 2, 3))
          + jnp.mean(jnp.square(x[:, :, 1:] - x[:, :, :-1]), axis=(1, 2, 3)))


def sharpness(out: Array, target: Array) -> np.ndarray:
  """gradient_energy(out) / gradient_energy(target) per image: (N, H, W, C) x2 -> (N,). 1 is as sharp
  as the truth; below 1 is blurrier (the pix2pix paper's finding for L1 alone), above 1 noisier.
  Needs no weight file; a flat target (energy 0) gives inf."""
  with np.errstate(divide="ignore"):
    return np.asarray(gradient_energy(out), np.float64) / np.asarray(gradient_energy(target), np.float64)


# ----------------------------------------------------------------------------- FID


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((sigma1 sigma2)^(1/2)) for covariance (symmetric PSD) matrices, via two symmetric eigensolves.

  With r = sigma1^(1/2), sigma1 sigma2 = r (r sigma2) has the eigenvalues of r sigma2 r, which is
  symmetric PSD, so the trace is the sum of the square roots of its eigenvalues. Exact, defined for
  singular covariances (few samples) without pytorch-fid's eps retry, and ~4x faster than scipy's
  `sqrtm` of the non-symmetric product at D = 2048 (6 s vs 23-26 s on 2 cores); the two agree to
  rounding on well-conditioned inputs.
  """
  w, u = np.linalg.eigh(sigma1)
  r = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
  return float(np.sqrt(np.clip(np.linalg.eigvalsh(r @ sigma2 @ r), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
  """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) (pytorch-fid's formula).

  Args:
    mu1, mu2: (D,) feature means.
    sigma1, sigma2: (D, D) feature covariances.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"frechet_distance: shapes mu {mu1.shape}, {mu2.shape}, sigma {sigma1.shape}, {sigma2.shape}"
                     " do not match (D,) and (D, D).")
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(N, D) features -> mean (D,) and covariance (D, D) with ddof 1, as pytorch-fid's stats."""
  feats = np.asarray(feats, np.float64)
  return feats.mean(axis=0), np.cov(feats, rowvar=False)


def fid(feats1: np.ndarray, feats2: np.ndarray) -> float:
  """Fréchet Inception Distance between two feature sets (N1, D) and (N2, D).

  Fitting a Gaussian needs many samples: with N < D the covariances are singular and FID is
  biased upwards (pytorch-fid recommends at least 2048 images for pool3 features).
  """
  feats1, feats2 = np.asarray(feats1), np.asarray(feats2)
  if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1] or min(len(feats1), len(feats2)) < 2:
    raise ValueError(f"fid: need two (N, D) feature sets with N >= 2, got {feats1.shape} and {feats2.shape}.")
  return frechet_distance(*feature_statistics(feats1), *feature_statistics(feats2))


# ----------------------------------------------------------------------------- KID


def kid(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: mean and std of the unbiased MMD^2 over random subsets.

  Each of `num_subsets` rounds draws m = min(subset_size, N1, N2) rows of each set without
  replacement (one round when m = N1 = N2: all rounds would be equal) and computes the unbiased estimate with k(x, y) = (x.y / D + 1)^3:
    sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2.
  Its expectation is 0 when both sets come from the same distribution, so it can be negative.
  The std is over subsets (ddof 0, as torch-fidelity and clean-fid report it).

  Args:
    feats1, feats2: (N1, D) and (N2, D) features.
    num_subsets: rounds to average.
    subset_size: rows per set and round, capped to the set sizes.
    seed: of the subset draws.

  Returns:
    (mean, std) of the per-subset MMD^2.
  """
  x, y = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
    raise ValueError(f"kid: need two (N, D) feature sets with N >= 2, got {x.shape} and {y.shape}.")
  m, d = min(subset_size, len(x), len(y)), x.shape[1]
  if m == len(x) == len(y):
    num_subsets = 1  # every "subset" would be the whole of both sets: one round gives the same value
  rng = np.random.default_rng(seed)
  mmds = np.empty(num_subsets)
  for i in range(num_subsets):
    xs = x[rng.choice(len(x), m, replace=False)]
    ys = y[rng.choice(len(y), m, replace=False)]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((xs, xs), (ys, ys), (xs, ys)))
    within = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
    mmds[i] = within / (m * (m - 1)) - 2.0 * k_xy.sum() / m**2
  return float(mmds.mean()), float(mmds.std())


# ----------------------------------------------------------------------------- features


@jax.jit
def _pool3(variables: dict, images: Array) -> Array:
  """(B, H, W, 3) in [-1, 1] -> (B, 2048): resized to 299x299, then the FID Inception."""
  b, _, _, c = images.shape
  # pytorch-fid: F.interpolate(size=(299, 299), mode='bilinear', align_corners=False) on [0, 1]
  # images, then 2x - 1. Bilinear weights sum to 1, so resizing [-1, 1] images directly is the
  # same map. Half-pixel centres and no antialiasing (also when shrinking) as in PyTorch.
  x = jax.image.resize(images.astype(jnp.float32), (b, 299, 299, c), "bilinear", antialias=False)
  return inception.FIDInceptionV3().apply(variables, x)


def _batches(images: np.ndarray | Iterable[np.ndarray], batch_size: int) -> Iterable[np.ndarray]:
  """Chunks of at most `batch_size` images from an array or from an iterable of batches."""
  for batch in ([images] if isinstance(images, (np.ndarray, jax.Array)) else images):
    for start in range(0, len(batch), batch_size):
      yield np.asarray(batch[start:start + batch_size])


def inception_features(variables: dict, images: np.ndarray | Iterable[np.ndarray], batch_size: int = 50) -> np.ndarray:
  """Pool3 features of pytorch-fid's FID Inception, `batch_size` images at a time.

  The images are bilinearly resized to 299x299 (PyTorch `align_corners=False`, no antialias)
  and fed in [-1, 1], exactly what pytorch-fid does to [0, 1] inputs. pytorch-fid reads saved
  8-bit images; to match its numbers on generated images, quantise them the same way first.

  Args:
    variables: FID Inception variables (`inception.load_pt_inception()`).
    images: (N, H, W, C) in [-1, 1] with C = 3 (or 1, repeated to RGB as PIL's convert('RGB')),
      or an iterable of such batches (e.g. a generator's outputs), so that the whole set never
      has to be in memory. H, W >= 75 is not needed: everything is resized to 299 first.
    batch_size: images per forward pass; the last batch is zero-padded so that one compiled
      program serves every batch of a given image size.

  Returns:
    (N, 2048) float64 features.
  """
  variables = jax.device_put(variables)  # once, not with every batch
  feats = []
  for batch in _batches(images, batch_size):
    n, _, _, c = batch.shape
    if c not in (1, 3):
      raise ValueError(f"inception_features: images have {c} channels; expected 3 (RGB) or 1.")
    if c == 1:
      batch = np.repeat(batch, 3, axis=-1)
    padded = np.concatenate([batch, np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)])
    feats.append(np.asarray(_pool3(variables, padded), np.float64)[:n])
  if not feats:
    return np.zeros((0, inception.FEATURES))
  return np.concatenate(feats)
