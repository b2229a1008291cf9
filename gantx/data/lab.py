"""CIE Lab for colorization, as the official code converts (scikit-image's rgb2lab / lab2rgb).

The official `colorization` data set mode converts each RGB photo with `skimage.color.rgb2lab` and
feeds A = L / 50 - 1 (lightness, 1 channel) and B = ab / 110 (2 channels), both about [-1, 1]; its
visuals go back with `skimage.color.lab2rgb`. These are the same formulas in numpy (sRGB with
scikit-image's gamma and matrices, illuminant D65, 2-degree observer), so gantx needs no scikit-image
(tests/test_colorization.py compares them with scikit-image's to float rounding).
"""

from __future__ import annotations

import numpy as np

# scikit-image's sRGB <-> XYZ matrices and D65 / 2-degree white point (skimage.color.colorconv).
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE = np.array([0.95047, 1.0, 1.08883])
L_SCALE, L_SHIFT, AB_SCALE = 50.0, 1.0, 110.0  # A = L / 50 - 1, B = ab / 110 (official ColorizationDataset)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
  """(..., 3) sRGB in [0, 1] -> (..., 3) CIE Lab (L in [0, 100]), as skimage.color.rgb2lab."""
  x = np.asarray(rgb, np.float64)
  linear = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
  xyz = (linear @ _XYZ_FROM_RGB.T) / _WHITE
  f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
  """(..., 3) CIE Lab -> (..., 3) sRGB in [0, 1], as skimage.color.lab2rgb (z < 0 clipped to 0, the
  result clipped to [0, 1])."""
  lab = np.asarray(lab, np.float64)
  fy = (lab[..., 0] + 16.0) / 116.0
  f = np.stack([lab[..., 1] / 500.0 + fy, fy, np.maximum(fy - lab[..., 2] / 200.0, 0.0)], axis=-1)
  xyz = np.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * _WHITE
  linear = xyz @ _RGB_FROM_XYZ.T
  srgb = np.where(linear > 0.0031308, 1.055 * np.power(np.maximum(linear, 0.0), 1 / 2.4) - 0.055, linear * 12.92)
  return np.clip(srgb, 0.0, 1.0)


def split(rgb_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """An (H, W, 3) uint8 photo -> (A (H, W, 1), B (H, W, 2)) float32: the official colorization example."""
  lab = rgb_to_lab(np.asarray(rgb_uint8, np.float64) / 255.0).astype(np.float32)
  return lab[..., :1] / L_SCALE - L_SHIFT, lab[..., 1:] / AB_SCALE


def to_rgb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(..., 1) A and (..., 2) B (model units) -> (..., 3) RGB in [-1, 1], the images gantx shows and scores."""
  lab = np.concatenate([(np.asarray(a, np.float64) + L_SHIFT) * L_SCALE, np.asarray(b, np.float64) * AB_SCALE], -1)
  return (lab_to_rgb(lab) * 2.0 - 1.0).astype(np.float32)
