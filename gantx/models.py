"""The official generators and discriminators as pure `flax.linen` modules.

Every network matches junyanz/pytorch-CycleGAN-and-pix2pix layer for layer: order, kernel
sizes, zero or reflect padding, the bias rule (a conv has a bias only when the norm is
instance norm, apart from the always-biased layers), dropout placement and parameter
counts (`tests/test_models.py` checks the official counts). Images are NHWC.

Submodules carry explicit names (`down_conv`, `up_norm`, `inner`, ...) so that parameter
paths are stable: the `.pth` importer maps the official state-dict keys onto them.

Every network takes `train: bool`. `train=True` is the official `model.train()`: batch norm
uses the statistics of the batch (and updates `batch_stats` when that collection is
mutable) and dropout is on (needs a 'dropout' rng). `train=False` is `model.eval()`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from gantx import config as config_lib

Array = jax.Array
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


# ----------------------------------------------------------------------------- init


def kernel_init(init_type: str, init_gain: float, transposed: bool = False) -> nn.initializers.Initializer:
  """The official `init_weights` for conv kernels (Flax layout (kh, kw, in, out)).

  PyTorch computes fans from a ConvTranspose2d weight (in, out, kh, kw) as if it were a
  conv weight, i.e. fan_in = out * kh * kw; `transposed=True` reproduces that for the
  (in, k, k, out) layout of `ConvTranspose`.
  """
  in_axis, out_axis = (-1, 0) if transposed else (-2, -1)
  if init_type == "normal":
    return nn.initializers.normal(stddev=init_gain)
  if init_type == "xavier":  # xavier_normal_(gain): var = gain^2 * 2 / (fan_in + fan_out)
    return nn.initializers.variance_scaling(init_gain**2, "fan_avg", "normal", in_axis, out_axis)
  if init_type == "kaiming":  # kaiming_normal_(a=0, mode='fan_in'): the gain is ignored
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis, out_axis)
  if init_type == "orthogonal":
    return nn.initializers.orthogonal(scale=init_gain)
  raise ValueError(f"config.init_type={init_type!r} is not one of {config_lib.INIT_TYPES}.")


def batch_norm_scale_init(init_gain: float) -> nn.initializers.Initializer:
  """BatchNorm weight ~ N(1, init_gain), as the official init does for every init_type."""

  def init(key, shape, dtype=jnp.float32):
    return 1.0 + init_gain * jax.random.normal(key, shape, dtype)

  return init


# ----------------------------------------------------------------------------- layers
#
# Convolutions as matrix products. XLA:CPU runs a dot at full speed (YNNPACK, float32 and
# bfloat16) only when the left operand's contracted dimension is its minor one; a weight
# gradient (sum over pixels, the major dimension of both operands) otherwise falls back to a
# slow float32 dot, and XLA's native convolutions neither reach the GEMM rate in bfloat16 nor
# have fast gradients at small spatial sizes (BENCHMARKS.md). The functions below write
# forward and backward passes as explicit GEMMs: im2col + GEMM for a convolution, GEMM +
# col2im for a transposed one, each the other's adjoint; operands in the compute dtype,
# accumulation and results in float32.

_F32 = jnp.float32
_MIN_BF16_DIM = 16  # a GEMM with a smaller M, N or K runs in float32 (tiny; keeps it off a slow path)


def _phase_taps(kernel: int, stride: int, padding: int, phase: int) -> list[int]:
  """Offsets t with output[stride*m + phase] += x[m - t] * w[stride*t + phase + padding]."""
  return [t for t in range(-kernel, kernel + 1) if 0 <= stride * t + phase + padding < kernel]


def _shift(z: Array, t: int, size: int, axis: int = 1) -> Array:
  """out[m] = z[m - t] along `axis` for m in [0, size), zero where m - t is out of range."""
  pads = [(0, 0)] * z.ndim
  pads[axis] = (max(t, 0), max(0, size - z.shape[axis] - t))
  return jax.lax.slice_in_dim(jnp.pad(z, pads), max(-t, 0), max(-t, 0) + size, axis=axis)


def _gemm(a: Array, b: Array, contract: tuple[int, int]) -> Array:
  """dot_general of a and b over one dimension each, float32 result (the operands' dtype inside)."""
  dims = (((contract[0],), (contract[1],)), ((), ()))
  sizes = (a.size // a.shape[contract[0]], b.size // b.shape[contract[1]], a.shape[contract[0]])
  if a.dtype != _F32 and min(sizes) < _MIN_BF16_DIM:
    a, b = a.astype(_F32), b.astype(_F32)
  return jax.lax.dot_general(a, b, dims, preferred_element_type=_F32)


def _im2col(x: Array, k: int, s: int, p: int, out_h: int, out_w: int) -> Array:
  """(n, h, w, c) -> (n, out_h, out_w, k*k*c): [i, j, (a, b, c)] = x[s*i + a - p, s*j + b - p, c], 0 outside."""
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (p, max(0, s * (out_h - 1) + k - h - p)), (p, max(0, s * (out_w - 1) + k - w - p)), (0, 0)))
  taps = [jax.lax.slice(xp, (0, a, b, 0), (n, a + s * (out_h - 1) + 1, b + s * (out_w - 1) + 1, c), (1, s, s, 1))
          for a in range(k) for b in range(k)]
  return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def _col2im(z: Array, k: int, s: int, p: int, out_h: int, out_w: int) -> Array:
  """Adjoint of `_im2col`: z (n, h, w, k, k, f) -> (n, out_h, out_w, f), out[s*i + a - p] += z[i, a].

  Each output phase (pixels with the same position modulo s) sums its taps of z, shifted.
  """
  n, _, _, _, _, f = z.shape
  m_h, m_w = -(-out_h // s), -(-out_w // s)
  rows = []
  for rh in range(s):
    cols = []
    for rw in range(s):
      acc = jnp.zeros((n, m_h, m_w, f), z.dtype)
      for t in _phase_taps(k, s, p, rh):
        zt = _shift(z[:, :, :, s * t + rh + p], t, m_h)  # (n, m_h, w, k, f)
        for u in _phase_taps(k, s, p, rw):
          acc = acc + _shift(zt[:, :, :, s * u + rw + p], u, m_w, axis=2)
      cols.append(acc)
    rows.append(jnp.stack(cols, axis=3))  # (n, m_h, m_w, s, f)
  y = jnp.stack(rows, axis=2).reshape(n, m_h * s, m_w * s, f)  # (n, m_h, s, m_w, s, f)
  return y[:, :out_h, :out_w]


def _transposed_conv_phases(g: Array, w: Array, k: int, s: int, p: int, out_h: int, out_w: int) -> Array:
  """out[s*i + a - p] += g[i] @ w[a]^T with w (k, k, f_out, c_g), one im2col + GEMM per output phase.

  The same map as GEMM + `_col2im`, but it gathers g instead of writing k*k products per
  pixel: cheaper when g has fewer channels than the output.
  """
  n, h, wd, cg = g.shape
  m_h, m_w = -(-out_h // s), -(-out_w // s)
  rows = []
  for rh in range(s):
    cols = []
    for rw in range(s):
      taps = [(t, u) for t in _phase_taps(k, s, p, rh) for u in _phase_taps(k, s, p, rw)]
      pieces = [_shift(_shift(g, t, m_h), u, m_w, axis=2) for t, u in taps]
      patches = pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=-1)
      kernel = jnp.concatenate([w[s * t + rh + p, s * u + rw + p] for t, u in taps], axis=-1)  # (f_out, taps*c_g)
      cols.append(_gemm(patches, kernel, (3, 1)))  # (n, m_h, m_w, f_out)
    rows.append(jnp.stack(cols, axis=3))
  y = jnp.stack(rows, axis=2).reshape(n, m_h * s, m_w * s, w.shape[2])
  return y[:, :out_h, :out_w]


def _weight_grad(x: Array, g: Array) -> Array:
  """sum over (n, h, w) of x[..., i] * g[..., j] -> (i, j), float32.

  With the pixels contracted as several dimensions, XLA transposes the left operand into a
  row-major (i, pixels) array and runs a fast GEMM; a single major contracted dimension would
  go to the slow dot instead.
  """
  if x.dtype != _F32 and min(x.shape[-1], g.shape[-1], x.size // x.shape[-1]) < _MIN_BF16_DIM:
    x, g = x.astype(_F32), g.astype(_F32)
  return jnp.einsum("nhwi,nhwj->ij", x, g, preferred_element_type=_F32)


def _weight_grad_cheaper(x: Array, g: Array) -> Array:
  """`_weight_grad(x, g)`, transposing whichever costs less: x (pixels x i), or g (pixels x j) and
  the (j, i) result. The barrier keeps XLA from folding the result's transpose back into the dot
  (a slow form)."""
  m, i, j = x.size // x.shape[-1], x.shape[-1], g.shape[-1]
  if m * i <= m * j + 2 * i * j:
    return _weight_grad(x, g)
  return jax.lax.optimization_barrier(_weight_grad(g, x)).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_gemm(x: Array, kernel: Array, stride: int, padding: int, dtype: Any) -> Array:
  """Zero-padded convolution of NHWC `x` with an HWIO `kernel` as im2col + GEMM; float32 result.

  Operands are cast to `dtype`; the gradients are GEMMs too: the input gradient a transposed
  convolution (`_transposed_conv_phases`), the weight gradient `_weight_grad`.
  """
  return _conv_gemm_fwd(x, kernel, stride, padding, dtype)[0]


def _conv_out_hw(h: int, w: int, k: int, s: int, p: int) -> tuple[int, int]:
  return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def _conv_transpose_out_hw(h: int, w: int, k: int, s: int, p: int, output_padding: int) -> tuple[int, int]:
  return (h - 1) * s - 2 * p + k + output_padding, (w - 1) * s - 2 * p + k + output_padding


def _conv_gemm_fwd(x, kernel, stride, padding, dtype):
  n, h, w, c = x.shape
  k, f = kernel.shape[0], kernel.shape[-1]
  out_h, out_w = _conv_out_hw(h, w, k, stride, padding)
  xc, kc = x.astype(dtype), kernel.astype(dtype)
  y = _gemm(_im2col(xc, k, stride, padding, out_h, out_w), kc.reshape(k * k * c, f), (3, 0))
  return y, (xc, kc, jnp.zeros((0,), x.dtype))


def _conv_gemm_bwd(stride, padding, dtype, res, dy):
  xc, kc, x_dtype = res
  _, h, w, c = xc.shape
  k, f = kc.shape[0], kc.shape[-1]
  _, out_h, out_w, _ = dy.shape
  dyc = dy.astype(dtype)
  if k == 4:  # the 4x4 layers (U-Net, PatchGAN): GEMM to patch gradients, then XLA's transpose of im2col
    col2im = jax.linear_transpose(lambda x: _im2col(x, k, stride, padding, out_h, out_w),
                                  jax.ShapeDtypeStruct(xc.shape, _F32))
    (dx,) = col2im(_gemm(dyc, kc.reshape(k * k * c, f), (3, 1)))
  else:  # 3x3 (ResNet): one im2col + GEMM per output phase is faster there
    dx = _transposed_conv_phases(dyc, kc, k, stride, padding, h, w)
  dk = _weight_grad_cheaper(_im2col(xc, k, stride, padding, out_h, out_w), dyc)
  return dx.astype(x_dtype.dtype), dk.reshape(k, k, c, f)


conv_gemm.defvjp(_conv_gemm_fwd, _conv_gemm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_transpose_gemm(x: Array, kernel: Array, stride: int, padding: int, output_padding: int,
                        dtype: Any) -> Array:
  """PyTorch's ConvTranspose2d of NHWC `x`, `kernel` (in, k, k, out): GEMM + col2im, float32 result.

  z = x @ kernel gives, for every input pixel, its k*k*out contributions, which `_col2im`
  sums into place. Backward: im2col of the output gradient, then one GEMM for each gradient.
  """
  return _conv_transpose_fwd(x, kernel, stride, padding, output_padding, dtype)[0]


def _conv_transpose_fwd(x, kernel, stride, padding, output_padding, dtype):
  n, h, w, c = x.shape
  k, f = kernel.shape[1], kernel.shape[-1]
  out_h, out_w = _conv_transpose_out_hw(h, w, k, stride, padding, output_padding)
  xc, kc = x.astype(dtype), kernel.astype(dtype)
  z = _gemm(xc, kc.reshape(c, k * k * f), (3, 0)).reshape(n, h, w, k, k, f)
  return _col2im(z, k, stride, padding, out_h, out_w), (xc, kc, jnp.zeros((0,), x.dtype))


def _conv_transpose_bwd(stride, padding, output_padding, dtype, res, dy):
  xc, kc, x_dtype = res
  n, h, w, c = xc.shape
  k, f = kc.shape[1], kc.shape[-1]
  cols = _im2col(dy.astype(dtype), k, stride, padding, h, w)  # (n, h, w, k*k*f), the adjoint of col2im
  dx = _gemm(cols, kc.reshape(c, k * k * f), (3, 1))
  dk = _weight_grad_cheaper(xc, cols)  # (c, k*k*f)
  return dx.astype(x_dtype.dtype), dk.reshape(c, k, k, f)


conv_transpose_gemm.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _native_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_CONV_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose_xla(x: Array, kernel: Array, stride: int, padding: int, out_hw: tuple[int, int]) -> Array:
  """PyTorch's ConvTranspose2d(stride, padding) to an (out_h, out_w) output, by XLA's convolutions.

  `kernel` is HWIO (k, k, features, in) of the strided convolution F (stride, symmetric
  `padding`) whose adjoint this is: F maps the (out_h, out_w, features) output back to the input's
  (h, w, in), and the output is F^T x (`output_padding` only picks out_h, out_w). The forward is
  JAX's transpose of F, an input-dilated convolution of the reversed kernel, which XLA:GPU runs as
  cuDNN's backward-data convolution. The custom gradient keeps both gradients in the forms
  XLA:GPU has cuDNN calls for: dx = F(g), and dkernel = F's weight gradient at input g and output
  cotangent x. Autodiff of the input-dilated form would give an input-dilated weight gradient,
  which XLA:GPU cannot map to cuDNN's weight-gradient call and runs as a forward convolution
  with an image-sized kernel (93 of the 180 ms of a CycleGAN step, batch 4, on an H100;
  BENCHMARKS.md).
  """
  y = jax.ShapeDtypeStruct((x.shape[0], *out_hw, kernel.shape[2]), x.dtype)
  return jax.linear_transpose(lambda z: _native_conv(z, kernel, stride, padding), y)(x)[0]


def _conv_transpose_xla_fwd(x, kernel, stride, padding, out_hw):
  return conv_transpose_xla(x, kernel, stride, padding, out_hw), (x, kernel)


def _conv_transpose_xla_bwd(stride, padding, out_hw, res, dy):
  x, kernel = res
  dx = _native_conv(dy, kernel, stride, padding)
  dk = jax.vjp(lambda k: _native_conv(dy, k, stride, padding), kernel)[1](x)[0]
  return dx, dk


conv_transpose_xla.defvjp(_conv_transpose_xla_fwd, _conv_transpose_xla_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_one_filter(x: Array, kernel: Array, stride: int, padding: int) -> Array:
  """A float32 convolution with one output channel (the PatchGAN's last layer), XLA's native one
  except for the backward: XLA:CPU computes the weight gradient as a convolution at ~1 GFLOP/s
  and the input gradient as one from a single channel. Here both are GEMMs over `_tap_planes` of
  the output gradient (k*k channels, the size of x): dx = planes @ kernel, dkernel = planes^T x."""
  return _native_conv(x.astype(_F32), kernel, stride, padding)


def _tap_planes(dy: Array, k: int, s: int, p: int, h: int, w: int) -> Array:
  """(n, out_h, out_w) -> (n, h, w, k*k): [n, y, z, a*k + b] = dy[n, i, j] where s*i + a - p = y and
  s*j + b - p = z, else 0 (where output pixel (i, j) reads input pixel (y, z) through tap (a, b))."""
  _, out_h, out_w = dy.shape
  span_h, span_w = s * (out_h - 1) + 1, s * (out_w - 1) + 1
  zero = jnp.zeros((), dy.dtype)
  return jnp.stack([jax.lax.pad(dy, zero, ((0, 0, 0), (a - p, h - a + p - span_h, s - 1), (b - p, w - b + p - span_w, s - 1)))
                    for a in range(k) for b in range(k)], axis=-1)


def _conv_one_filter_fwd(x, kernel, stride, padding):
  return conv_one_filter(x, kernel, stride, padding), (x.astype(_F32), kernel, jnp.zeros((0,), x.dtype))


def _conv_one_filter_bwd(stride, padding, res, dy):
  x, kernel, x_dtype = res
  n, h, w, c = x.shape
  k = kernel.shape[0]
  planes = _tap_planes(dy[..., 0].astype(_F32), k, stride, padding, h, w)
  dx = _gemm(planes, kernel.reshape(k * k, c), (3, 0))
  dk = _weight_grad(planes, x)  # (k*k, c): the planes are the small operand, so XLA transposes them
  return dx.astype(x_dtype.dtype), dk.reshape(kernel.shape)


conv_one_filter.defvjp(_conv_one_filter_fwd, _conv_one_filter_bwd)


# Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
# Networks", CVPR 2016) for the wide convolutions (ResNet blocks, PatchGAN, U-Net encoder;
# stride 2 by space-to-depth, `winograd_conv`). F(m, r) computes an m x m output tile from an
# n x n input tile, n = m + r - 1, as Y = A^T [(G g G^T) * (B^T d B)] A: the products over
# channels become n^2 GEMMs with m^2 r^2 / n^2 times fewer multiply-adds than the direct form
# (F(4, 3) and F(3, 4): 4x fewer, F(2, 3) and F(3, 2): 2.25x, F(2, 2): 1.78x). The transforms
# are sums of strided slices (memory-bound elementwise work). The points +-2 of the larger tiles
# magnify bfloat16's rounding to 2-7% of the output scale, so bfloat16 runs only the tiles on 0
# and +-1 (F(2, 3), F(3, 2), F(2, 2)), whose error (~0.5%) is near a bfloat16 GEMM's; float32's
# stays below 2e-5 (BENCHMARKS.md).

_WINOGRAD_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0)  # enough for F(4, 3) and F(3, 4)
# (compute dtype, kernel size, stride) -> the (m, r) of the F(m, r) such layers run (BENCHMARKS.md):
# r = k / stride, or a divisor of it (`winograd_conv` splits the kernel into (k / stride / r)^2
# shifted r x r kernels): bfloat16's stride-1 4x4 runs as four 2x2 by F(2, 2).
_WINOGRAD_TILE = {("float32", 3, 1): (4, 3), ("float32", 4, 1): (3, 4), ("float32", 4, 2): (3, 2),
                  ("bfloat16", 3, 1): (2, 3), ("bfloat16", 4, 1): (2, 2), ("bfloat16", 4, 2): (3, 2)}
# The same for transposed convolutions (`winograd_conv_transpose`): in bfloat16 the GEMM + col2im
# form was as fast in the step.
_WINOGRAD_TILE_TRANSPOSED = {("float32", 4, 2): (3, 2)}


@functools.lru_cache
def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A^T (m, n), G (n, r) and B^T (n, n) of F(m, r), n = m + r - 1.

  For a 1-D input tile d (n) and filter g (r), A^T [(G g) * (B^T d)] is the correlation
  y[i] = sum_k d[i + k] g[k], i < m. Toom-Cook over the points 0, 1, -1, 2, ... and infinity:
  A^T evaluates at the points, G interpolates; B^T is solved from the identity above, which is
  checked to hold exactly.
  """
  n = m + r - 1
  points = _WINOGRAD_POINTS[:n - 1]
  if len(points) != n - 1:
    raise ValueError(f"F({m}, {r}) needs {n - 1} points; only {len(_WINOGRAD_POINTS)} are defined.")
  at, g = np.zeros((m, n)), np.zeros((n, r))
  for j, a in enumerate(points):
    at[:, j] = [a**i for i in range(m)]
    g[j] = [a**k / np.prod([a - b for b in points if b != a]) for k in range(r)]
  at[m - 1, n - 1] = g[n - 1, r - 1] = 1.0  # the point at infinity
  # sum_j at[i, j] g[j, k] bt[j, p] = [p == i + k] for all i, k: one linear system per column p.
  coef = np.einsum("ij,jk->ikj", at, g).reshape(m * r, n)
  target = np.array([[float(p == i + k) for p in range(n)] for i in range(m) for k in range(r)])
  bt = np.linalg.lstsq(coef, target, rcond=None)[0]
  if not np.allclose(coef @ bt, target, atol=1e-12):
    raise ValueError(f"F({m}, {r}): no exact input transform for points {points}.")
  return at, g, bt


def _combine(mat: np.ndarray, xs: list[Array]) -> list[Array]:
  """[sum_j mat[i, j] * xs[j] for each row i], skipping zero coefficients (one fusion each)."""
  out = []
  for row in mat:
    terms = [x if c == 1 else -x if c == -1 else x * np.float32(c) for c, x in zip(row, xs) if c != 0]
    out.append(functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(xs[0]))
  return out


def _winograd_tiles_transform(x: Array, mat: np.ndarray, m: int, th: int, tw: int) -> Array:
  """mat (k, t) applied on both sides of every t x t tile at stride m: (N, H, W, C) -> (k*k, N, th, tw, C).

  out[a*k + b, :, i, j] = sum_{p, q} mat[a, p] mat[b, q] x[:, m*i + p, m*j + q]: B^T d B with
  mat = B^T (tiles overlap), and the output transform's adjoint with mat = A (they do not).
  Rows first, then columns.
  """
  k, t = mat.shape
  rows = jnp.stack(_combine(mat, [x[:, a:a + m * (th - 1) + 1:m] for a in range(t)]))  # (k, N, th, W, C)
  rows = jax.lax.optimization_barrier(rows)  # else each output recomputes its row sums
  cols = _combine(mat, [rows[:, :, :, b:b + m * (tw - 1) + 1:m] for b in range(t)])  # k x (k, N, th, tw, C)
  return jnp.stack(cols, axis=1).reshape((k * k,) + cols[0].shape[1:])


def _winograd_output(prod: Array, at: np.ndarray) -> Array:
  """(n*n, N, th, tw, F) -> A^T M A of every tile, placed: (N, th*m, tw*m, F)."""
  m, n = at.shape
  prod = prod.reshape((n, n) + prod.shape[1:])
  cols = jnp.stack(_combine(at, [prod[:, b] for b in range(n)]))  # (m, n, N, th, tw, F)
  y = jnp.stack(_combine(at, [cols[:, a] for a in range(n)]))  # (m_row, m_col, N, th, tw, F)
  _, _, batch, th, tw, f = y.shape
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(batch, th * m, tw * m, f)


def _winograd_kernel(kernel: Array, g: np.ndarray) -> Array:
  """(r, r, C, F) -> G g G^T, (n*n, C, F)."""
  r = g.shape[1]
  rows = jnp.stack(_combine(g, [kernel[a].astype(_F32) for a in range(r)]))  # (n, r, C, F)
  return jnp.stack(_combine(g, [rows[:, b] for b in range(r)]), axis=1).reshape((-1,) + kernel.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_winograd(x: Array, kernel: Array, m: int, dtype: Any) -> Array:
  """Unpadded stride-1 convolution of NHWC `x` with an HWIO `kernel` by Winograd's F(m, r); float32.

  The n*n GEMMs take operands in `dtype`; the transforms run in float32. The backward pass is
  the forward's adjoint: the output transform's transpose, two batched GEMMs (input and
  transformed-kernel gradients), the transposes of the input and kernel transforms.
  """
  return _conv_winograd_fwd(x, kernel, m, dtype)[0]


def _conv_winograd_fwd(x, kernel, m, dtype):
  n, h, w, c = x.shape
  r = kernel.shape[0]
  at, g, bt = winograd_matrices(m, r)
  out_h, out_w = h - r + 1, w - r + 1
  th, tw = -(-out_h // m), -(-out_w // m)  # tiles, the last ones partly outside
  xp = jnp.pad(x.astype(_F32), ((0, 0), (0, th * m + r - 1 - h), (0, tw * m + r - 1 - w), (0, 0)))
  v = _winograd_tiles_transform(xp, bt, m, th, tw).astype(dtype)
  u = _winograd_kernel(kernel, g).astype(dtype)
  prod = jnp.einsum("bnhwc,bcf->bnhwf", v, u, preferred_element_type=_F32)
  return _winograd_output(prod, at)[:, :out_h, :out_w], (v, u, jnp.zeros((0,), x.dtype))


def _conv_winograd_bwd(m, dtype, res, dy):
  v, u, x_dtype = res
  nn2, batch, th, tw, c = v.shape
  f = u.shape[-1]
  r = int(round(nn2**0.5)) - m + 1
  at, g, bt = winograd_matrices(m, r)
  h, w = th * m + r - 1, tw * m + r - 1
  dyp = jnp.pad(dy.astype(_F32), ((0, 0), (0, th * m - dy.shape[1]), (0, tw * m - dy.shape[2]), (0, 0)))
  # The output transform's adjoint, written out: XLA's transpose of its interleaving runs ~30x slower.
  dprod = _winograd_tiles_transform(dyp, at.T, m, th, tw).astype(dtype)
  dv = jnp.einsum("bnhwf,bcf->bnhwc", dprod, u, preferred_element_type=_F32)
  # Contracting the tiles as three dimensions lets XLA transpose v into a fast GEMM (see _weight_grad).
  du = jnp.einsum("bnhwc,bnhwf->bcf", v, dprod, preferred_element_type=_F32)
  (dxp,) = jax.linear_transpose(lambda x: _winograd_tiles_transform(x, bt, m, th, tw),
                                jax.ShapeDtypeStruct((batch, h, w, c), _F32))(dv)
  (dk,) = jax.linear_transpose(lambda k: _winograd_kernel(k, g), jax.ShapeDtypeStruct((r, r, c, f), _F32))(du)
  out_h, out_w = dy.shape[1:3]
  return dxp[:, :out_h + r - 1, :out_w + r - 1].astype(x_dtype.dtype), dk


_conv_winograd.defvjp(_conv_winograd_fwd, _conv_winograd_bwd)
# Jitted, so that its forward and backward are traced once per shape rather than once per layer
# and pass (the ResNet has 18 such layers, CycleGAN runs each generator 3 times a step).
conv_winograd = jax.jit(_conv_winograd, static_argnums=(2, 3))


def winograd_conv(x: Array, kernel: Array, stride: int, padding: int, tile: tuple[int, int], dtype: Any) -> Array:
  """Zero-padded convolution, stride 1 or stride 2 with an even kernel, by `conv_winograd`'s F(m, r).

  Stride 2 is a stride-1 convolution of the space-to-depth input (2x2 pixel blocks as 4C
  channels) with a k/2 x k/2 kernel: out[i] = sum_a xp[2i + a] w[a] = sum_{t, rho} xp[2(i + t) + rho] w[2t + rho].
  A stride-1 kernel of size k = q r is then split into q x q shifted r x r kernels, whose inputs
  are stacked as q^2 C channels: out[i] = sum_u x[i + u] w[u] = sum_{t, a} x[i + r t + a] w[r t + a].
  """
  m, r = tile
  p = padding
  n, h, w, c = x.shape
  k, f = kernel.shape[0], kernel.shape[-1]
  if stride == 1:
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  elif stride == 2 and k % 2 == 0:
    out_h, out_w = _conv_out_hw(h, w, k, stride, p)
    hp, wp = 2 * (out_h + k // 2 - 1), 2 * (out_w + k // 2 - 1)  # rows and columns that the output reads
    xp = jnp.pad(x, ((0, 0), (p, max(0, hp - h - p)), (p, max(0, wp - w - p)), (0, 0)))[:, :hp, :wp]
    xp = xp.reshape(n, hp // 2, 2, wp // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hp // 2, wp // 2, 4 * c)
    kernel = kernel.reshape(k // 2, 2, k // 2, 2, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(k // 2, k // 2, 4 * c, f)
    k, c = k // 2, 4 * c
  else:
    raise ValueError(f"winograd_conv: stride {stride} with a {k}x{k} kernel (stride 1, or 2 with an even kernel).")
  if k % r:
    raise ValueError(f"winograd_conv: F({m}, {r}) cannot split a {k}x{k} (stride-1) kernel.")
  q = k // r
  if q > 1:
    hh, ww = xp.shape[1] - r * (q - 1), xp.shape[2] - r * (q - 1)
    xp = jnp.concatenate([xp[:, r * a:r * a + hh, r * b:r * b + ww] for a in range(q) for b in range(q)], axis=-1)
    kernel = kernel.reshape(q, r, q, r, c, f).transpose(1, 3, 0, 2, 4, 5).reshape(r, r, q * q * c, f)
  return conv_winograd(xp, kernel, m, dtype)


def winograd_conv_transpose(x: Array, kernel: Array, stride: int, padding: int, tile: tuple[int, int],
                            dtype: Any) -> Array:
  """PyTorch's ConvTranspose2d of NHWC `x`, `kernel` (in, k, k, out), no output padding, by Winograd.

  A transposed convolution is the input gradient of the convolution with the same weight (which
  maps `out` channels to `in`): its forward is `winograd_conv`'s backward for the input, and its
  own gradients are the derivatives of that backward (the convolution itself, and a GEMM over
  the tiles for the kernel). The forward pass at zeros that `jax.vjp` traces is unused and removed.
  """
  n, h, w, _ = x.shape
  k, f = kernel.shape[1], kernel.shape[-1]
  out_shape = (n, *_conv_transpose_out_hw(h, w, k, stride, padding, 0), f)
  conv = lambda z: winograd_conv(z, kernel.transpose(1, 2, 3, 0), stride, padding, tile, dtype)
  return jax.vjp(conv, jnp.zeros(out_shape, _F32))[1](x.astype(_F32))[0]


def _conv_impl(name: str) -> str:
  if name not in ("xla", "gemm"):
    raise ValueError(f"conv_impl={name!r} is not 'xla' or 'gemm' (Layers resolves config.conv_impl='auto').")
  return name


def resolve_conv_impl(name: str) -> str:
  """config.conv_impl -> 'xla' or 'gemm': 'auto' is 'gemm' on the CPU backend (where XLA's
  convolution gradients are slow, BENCHMARKS.md) and 'xla' on GPUs and TPUs."""
  if name == "auto":
    return "gemm" if jax.default_backend() == "cpu" else "xla"
  if name not in config_lib.CONV_IMPLS:
    raise ValueError(f"config.conv_impl={name!r} is not one of {', '.join(config_lib.CONV_IMPLS)}.")
  return name


def _compute_dtype(name: str) -> Any:
  if name not in config_lib.COMPUTE_DTYPES:
    raise ValueError(f"config.compute_dtype={name!r} is not one of {config_lib.COMPUTE_DTYPES}.")
  return jnp.dtype(name)


class ConvTranspose(nn.Module):
  """PyTorch `ConvTranspose2d(in, features, k, stride, padding, output_padding)`, square kernel.

  Computed by `conv_transpose_gemm` (GEMM + col2im, gradients as GEMMs). On XLA:CPU the
  gradients of the zero-inserting form (`nn.ConvTranspose`, an input-dilated conv) are ~30x
  slower than its forward, and even stride-1 conv gradients are slow at the U-Net's small
  spatial sizes; this form runs the whole layer at GEMM speed (BENCHMARKS.md). The 4x4
  stride-2 layers with at least `winograd_min_pixels` input pixels and `winograd_min_channels`
  channels (the U-Net's 64x64 -> 128x128 level) run in float32 as the adjoint of the Winograd
  stride-2 convolution instead (`winograd_conv_transpose`, F(3, 2)): 2.25x fewer products.

  With `conv_impl='xla'` it is `conv_transpose_xla` instead (cuDNN's calls on GPUs).

  The kernel has layout (in, k, k, features): PyTorch's weight (in, out, k, k) transposed
  by (0, 2, 3, 1), unflipped, so that x @ kernel.reshape(in, -1) needs no copy. It is float32
  whatever `compute_dtype` ('bfloat16' casts it, and x, for the products only).
  """

  features: int
  kernel_size: int
  strides: int = 2
  padding: int = 1
  output_padding: int = 0
  use_bias: bool = True
  kernel_init: Callable[..., Array] = nn.initializers.normal(0.02)
  compute_dtype: str = "float32"
  conv_impl: str = "gemm"  # 'gemm' or 'xla' (Layers resolves config.conv_impl='auto')
  winograd_min_channels: int = 64  # 'gemm', 4x4 stride 2: Winograd from this many input and output channels ...
  winograd_min_pixels: int = 64 * 64  # ... and this many input pixels

  def winograd_tile(self, h: int, w: int, c: int) -> tuple[int, int] | None:
    """(m, r) of the F(m, r) this layer runs (`winograd_conv_transpose`), or None for GEMM + col2im."""
    if (_conv_impl(self.conv_impl) != "gemm" or self.output_padding or min(c, self.features) < self.winograd_min_channels
        or h * w < self.winograd_min_pixels):
      return None
    return _WINOGRAD_TILE_TRANSPOSED.get((self.compute_dtype, self.kernel_size, self.strides))

  @nn.compact
  def __call__(self, x: Array) -> Array:
    n, h, w, c = x.shape
    k, s, p = self.kernel_size, self.strides, self.padding
    kernel = self.param("kernel", self.kernel_init, (c, k, k, self.features), jnp.float32)
    out_h, out_w = _conv_transpose_out_hw(h, w, k, s, p, self.output_padding)
    if out_h % s or out_w % s:
      raise ValueError(f"ConvTranspose: output {out_h}x{out_w} is not a multiple of stride {s}.")
    dtype = _compute_dtype(self.compute_dtype)
    tile = self.winograd_tile(h, w, c)
    if _conv_impl(self.conv_impl) == "xla":
      # (in, k, k, features) -> F's HWIO kernel (k, k, features, in): PyTorch's weight array is the
      # same for a ConvTranspose2d and for the Conv2d whose adjoint it is.
      y = conv_transpose_xla(x.astype(dtype), kernel.transpose(1, 2, 3, 0).astype(dtype), s, p,
                             (out_h, out_w)).astype(_F32)
    elif tile:
      y = winograd_conv_transpose(x, kernel, s, p, tile, dtype)
    else:
      y = conv_transpose_gemm(x, kernel, s, p, self.output_padding, dtype)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y


class Conv(nn.Module):
  """`nn.Conv` with symmetric zero padding: XLA's native convolution, or `conv_gemm`.

  Both forms give the same numbers (up to rounding). The choice is static, by shape and
  compute dtype (BENCHMARKS.md). In float32, XLA:CPU's weight gradients of the 4x4 convolutions
  (U-Net encoder, PatchGAN) are slow at every size, so those take the GEMM form from
  `gemm_min_channels_4x4` input channels; other kernels (the ResNet's 3x3, fastest native at
  64x64 and above) only at outputs of 16x16 and less with >= 128 channels, or with stride 2
  and >= 128 channels (the ResNet's 128 -> 256 downsampling: its native gradients are slow).
  The PatchGAN's 1-channel last layer on >= 128 channels gets its own weight gradient
  (`conv_one_filter`). In bfloat16 every layer with at least `gemm_min_channels_bf16` input and
  output channels takes the GEMM form, since only GEMMs run at bfloat16 speed. Thin layers (the RGB ends) stay native
  and float32. Before any of these rules, layers with at least `winograd_min_channels` input
  and output channels take Winograd's form (`winograd_conv`): the ResNet blocks' 3x3 by F(4, 3)
  in float32 and F(2, 3) in bfloat16, the stride-2 4x4 layers with outputs of at least 32x32
  (U-Net encoder, PatchGAN) by F(3, 2) on their space-to-depth input in both, and the
  PatchGAN's stride-1 4x4 by F(3, 4) in float32, as four shifted 2x2 kernels by F(2, 2) in
  bfloat16. These rules are XLA:CPU's: with
  `conv_impl='xla'` (what 'auto' gives on GPUs and TPUs) every layer is XLA's native
  convolution in `compute_dtype`.
  """

  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Callable[..., Array] = nn.initializers.normal(0.02)
  compute_dtype: str = "float32"
  gemm_max_pixels: int = 16 * 16  # float32: GEMM when out_h * out_w is at most this ...
  gemm_min_channels: int = 128  # ... and the input has at least this many channels
  gemm_min_channels_4x4: int = 64  # float32, 4x4 kernels: GEMM from this many input channels
  gemm_min_channels_bf16: int = 16  # bfloat16: GEMM when input and output have at least this many
  winograd_min_channels: int = 64  # Winograd (_WINOGRAD_TILE) from this many input and output channels ...
  winograd_min_pixels_strided: int = 32 * 32  # ... and, with stride 2, this many output pixels
  conv_impl: str = "gemm"  # 'gemm' (the rules above) or 'xla' (Layers resolves config.conv_impl='auto')

  def uses_gemm(self, h: int, w: int, c: int) -> bool:
    k, s, p = self.kernel_size, self.strides, self.padding
    out_h, out_w = _conv_out_hw(h, w, k, s, p)
    if _conv_impl(self.conv_impl) == "xla" or self.features == 1:
      return False  # 'xla': native; 1 filter: conv_one_filter on wide inputs, else native (__call__)
    if self.compute_dtype == "bfloat16":
      return min(c, self.features) >= self.gemm_min_channels_bf16
    if k == 4:
      return c >= self.gemm_min_channels_4x4
    # A stride-2 3x3 (the ResNet's second downsampling) at any size: XLA:CPU's gradients of it are slow.
    return k > 1 and c >= self.gemm_min_channels and (out_h * out_w <= self.gemm_max_pixels or s == 2)

  def winograd_tile(self, h: int, w: int, c: int) -> tuple[int, int] | None:
    """(m, r) of the F(m, r) this layer runs (`winograd_conv`), or None when it takes another form."""
    if _conv_impl(self.conv_impl) != "gemm" or min(c, self.features) < self.winograd_min_channels:
      return None
    out_h, out_w = _conv_out_hw(h, w, self.kernel_size, self.strides, self.padding)
    if self.strides > 1 and out_h * out_w < self.winograd_min_pixels_strided:
      return None
    return _WINOGRAD_TILE.get((self.compute_dtype, self.kernel_size, self.strides))

  @nn.compact
  def __call__(self, x: Array) -> Array:
    n, h, w, c = x.shape
    k, s, p = self.kernel_size, self.strides, self.padding
    dtype = _compute_dtype(self.compute_dtype)
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), jnp.float32)
    tile = self.winograd_tile(h, w, c)
    if self.conv_impl == "xla":
      y = _native_conv(x.astype(dtype), kernel.astype(dtype), s, p).astype(_F32)
    elif tile:
      y = winograd_conv(x, kernel, s, p, tile, dtype)
    elif self.uses_gemm(h, w, c):
      y = conv_gemm(x, kernel, s, p, dtype)
    elif self.features == 1 and k > 1 and c >= self.gemm_min_channels:
      y = conv_one_filter(x, kernel, s, p)
    else:
      y = _native_conv(x.astype(_F32), kernel, s, p)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y


def reflect_pad(x: Array, pad: int) -> Array:
  """`nn.ReflectionPad2d(pad)` on NHWC."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class Norm(nn.Module):
  """The official `get_norm_layer`: 'batch', 'instance' (no affine, no stats) or 'none'."""

  kind: str
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.kind == "batch":
      # PyTorch momentum 0.1 is Flax momentum 0.9. Under jit over a data mesh the batch is
      # one global array, so these are the statistics of the global batch (synchronised BN).
      return nn.BatchNorm(
          use_running_average=not train, momentum=0.9, epsilon=1e-5, use_fast_variance=False,
          scale_init=batch_norm_scale_init(self.init_gain), name="bn")(x)
    if self.kind == "instance":
      return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, use_fast_variance=False)(x)
    if self.kind == "none":
      return x
    raise ValueError(f"config.norm={self.kind!r} is not one of {config_lib.NORMS}.")


@dataclasses.dataclass(frozen=True)
class Layers:
  """The layer factories shared by every network: norm kind, the bias rule and the init."""

  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02
  compute_dtype: str = "float32"  # of the convolutions' products; parameters and norms stay float32
  conv_impl: str = "gemm"  # 'gemm' or 'xla' (resolve_conv_impl)

  @property
  def use_bias(self) -> bool:
    return self.norm == "instance"  # the official bias rule

  def conv(self, features, kernel, stride, padding, bias=None, name=None):
    return Conv(features, kernel, stride, padding, use_bias=self.use_bias if bias is None else bias,
                kernel_init=kernel_init(self.init_type, self.init_gain), compute_dtype=self.compute_dtype,
                conv_impl=self.conv_impl, name=name)

  def conv_transpose(self, features, kernel, output_padding=0, bias=None, name=None):
    return ConvTranspose(
        features, kernel, 2, 1, output_padding, use_bias=self.use_bias if bias is None else bias,
        kernel_init=kernel_init(self.init_type, self.init_gain, transposed=True), compute_dtype=self.compute_dtype,
        conv_impl=self.conv_impl,
        name=name)

  def norm_layer(self, name):
    return Norm(self.norm, self.init_gain, name=name)


# ----------------------------------------------------------------------------- generators


class UnetSkipBlock(nn.Module):
  """One level of the official U-Net: down, the inner levels, up, and the skip concat.

  Level 0 is the outermost block; `inner` nests the next level, as the official
  `UnetSkipConnectionBlock.model` does, so parameter paths follow the state-dict nesting.
  """

  channels: tuple[int, ...]  # (ngf, 2ngf, 4ngf, 8ngf, 8ngf, ...): inner width of each level
  level: int
  input_nc: int
  output_nc: int
  num_dropout_levels: int
  layers: Layers
  use_dropout: bool

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    L, level = self.layers, self.level
    outermost, innermost = level == 0, level == len(self.channels) - 1
    inner_nc = self.channels[level]
    outer_nc = self.output_nc if outermost else self.channels[level - 1]
    # Levels just above the innermost, in the 8*ngf stretch, carry Dropout(0.5) after up_norm.
    dropout = self.use_dropout and (len(self.channels) - 1 - self.num_dropout_levels) <= level < len(self.channels) - 1

    y = x if outermost else nn.leaky_relu(x, 0.2)
    y = L.conv(inner_nc, 4, 2, 1, name="down_conv")(y)
    if not (outermost or innermost):
      y = L.norm_layer("down_norm")(y, train)
    if not innermost:
      y = UnetSkipBlock(self.channels, level + 1, self.input_nc, self.output_nc, self.num_dropout_levels,
                        L, self.use_dropout, name="inner")(y, train)
    y = nn.relu(y)
    y = L.conv_transpose(outer_nc, 4, bias=True if outermost else None, name="up_conv")(y)
    if outermost:
      return jnp.tanh(y)
    y = L.norm_layer("up_norm")(y, train)
    if dropout:
      y = nn.Dropout(0.5, deterministic=not train)(y)
    # Official: cat([x, block(x)]) where x was lrelu'd in place; the ReLU that follows every
    # concat makes relu(lrelu(x)) == relu(x), so concatenating the raw x is identical.
    return jnp.concatenate([x, y], axis=-1)


class UnetGenerator(nn.Module):
  """The official `UnetGenerator(input_nc, output_nc, num_downs, ngf)`; H, W multiples of 2**num_downs."""

  layers: Layers
  input_nc: int = 3
  output_nc: int = 3
  num_downs: int = 8
  ngf: int = 64
  use_dropout: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.num_downs < 5:
      raise ValueError(f"A U-Net needs num_downs >= 5 (unet_32 or larger), got {self.num_downs}.")
    ngf = self.ngf
    num_dropout_levels = self.num_downs - 5
    channels = (ngf, 2 * ngf, 4 * ngf, 8 * ngf) + (8 * ngf,) * num_dropout_levels + (8 * ngf,)
    return UnetSkipBlock(channels, 0, self.input_nc, self.output_nc, num_dropout_levels, self.layers,
                         self.use_dropout, name="outer")(x, train)


class ResnetBlock(nn.Module):
  """x + [reflpad1, conv3, norm, relu, (dropout), reflpad1, conv3, norm](x); no ReLU after the sum."""

  dim: int
  layers: Layers
  use_dropout: bool

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    L = self.layers
    y = L.conv(self.dim, 3, 1, 0, name="conv1")(reflect_pad(x, 1))
    y = nn.relu(L.norm_layer("norm1")(y, train))
    if self.use_dropout:
      y = nn.Dropout(0.5, deterministic=not train)(y)
    y = L.conv(self.dim, 3, 1, 0, name="conv2")(reflect_pad(y, 1))
    return x + L.norm_layer("norm2")(y, train)


class ResnetGenerator(nn.Module):
  """The official `ResnetGenerator` (c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, c7s1-out)."""

  layers: Layers
  input_nc: int = 3
  output_nc: int = 3
  ngf: int = 64
  n_blocks: int = 9
  use_dropout: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    L, ngf = self.layers, self.ngf
    y = L.conv(ngf, 7, 1, 0, name="conv_in")(reflect_pad(x, 3))
    y = nn.relu(L.norm_layer("norm_in")(y, train))
    for i in range(2):  # downsampling: zero-padded stride-2 3x3 convs
      y = L.conv(ngf * 2 ** (i + 1), 3, 2, 1, name=f"down{i}_conv")(y)
      y = nn.relu(L.norm_layer(f"down{i}_norm")(y, train))
    for i in range(self.n_blocks):
      y = ResnetBlock(ngf * 4, L, self.use_dropout, name=f"block{i}")(y, train)
    for i in range(2):  # upsampling: ConvTranspose k3 s2 p1 output_padding 1
      y = L.conv_transpose(ngf * 2 ** (1 - i), 3, output_padding=1, name=f"up{i}_conv")(y)
      y = nn.relu(L.norm_layer(f"up{i}_norm")(y, train))
    y = L.conv(self.output_nc, 7, 1, 0, bias=True, name="conv_out")(reflect_pad(y, 3))
    return jnp.tanh(y)


# ----------------------------------------------------------------------------- discriminators


class NLayerDiscriminator(nn.Module):
  """The official PatchGAN: n_layers stride-2 4x4 convs, one stride-1, then a 1-channel map (logits)."""

  layers: Layers
  ndf: int = 64
  n_layers: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    L = self.layers
    y = nn.leaky_relu(L.conv(self.ndf, 4, 2, 1, bias=True, name="conv0")(x), 0.2)
    for n in range(1, self.n_layers + 1):
      stride = 2 if n < self.n_layers else 1
      y = L.conv(self.ndf * min(2**n, 8), 4, stride, 1, name=f"conv{n}")(y)
      y = nn.leaky_relu(L.norm_layer(f"norm{n}")(y, train), 0.2)
    return L.conv(1, 4, 1, 1, bias=True, name=f"conv{self.n_layers + 1}")(y)


class PixelDiscriminator(nn.Module):
  """The official 1x1 PixelGAN: conv1x1(bias) -> lrelu -> conv1x1 -> norm -> lrelu -> conv1x1."""

  layers: Layers
  ndf: int = 64

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    L = self.layers
    y = nn.leaky_relu(L.conv(self.ndf, 1, 1, 0, bias=True, name="conv0")(x), 0.2)
    y = L.conv(self.ndf * 2, 1, 1, 0, name="conv1")(y)
    y = nn.leaky_relu(L.norm_layer("norm1")(y, train), 0.2)
    return L.conv(1, 1, 1, 0, name="conv2")(y)


# ----------------------------------------------------------------------------- factories


def _layers(config) -> Layers:
  # Runs written before conv_impl existed have no such field: they get the default.
  return Layers(config.norm, config.init_type, config.init_gain, config.compute_dtype,
                resolve_conv_impl(config.get("conv_impl", "auto")))


def define_G(config, input_nc: int | None = None, output_nc: int | None = None) -> nn.Module:
  """The generator named by `config.netG` (official `define_G`)."""
  input_nc = config.input_nc if input_nc is None else input_nc
  output_nc = config.output_nc if output_nc is None else output_nc
  common = dict(layers=_layers(config), input_nc=input_nc, output_nc=output_nc, ngf=config.ngf,
                use_dropout=not config.no_dropout)
  num_downs = config_lib.unet_num_downs(config.netG)
  if num_downs is not None:
    return UnetGenerator(num_downs=num_downs, **common)
  return ResnetGenerator(n_blocks=config_lib.resnet_blocks(config.netG), **common)


def define_D(config, input_nc: int) -> nn.Module:
  """The discriminator named by `config.netD` (official `define_D`)."""
  common = dict(layers=_layers(config), ndf=config.ndf)
  if config.netD == "basic":
    return NLayerDiscriminator(n_layers=3, **common)
  if config.netD == "n_layers":
    return NLayerDiscriminator(n_layers=config.n_layers_D, **common)
  if config.netD == "pixel":
    return PixelDiscriminator(**common)
  raise ValueError(f"config.netD={config.netD!r} is not one of {config_lib.DISCRIMINATORS}.")


def size_multiple(netG: str) -> int:
  """The multiple that H and W must be for `netG` (official: unet_256 -> 256, resnets -> 4)."""
  num_downs = config_lib.unet_num_downs(netG)
  return 2**num_downs if num_downs is not None else 4


def check_image_size(config, height: int, width: int) -> None:
  """Raises ValueError, before anything compiles, if the generator cannot take H x W."""
  multiple = size_multiple(config.netG)
  if height % multiple or width % multiple:
    raise ValueError(
        f"config.crop_size: images of {height}x{width} do not fit netG={config.netG!r}, which needs"
        f" height and width to be multiples of {multiple}. Use a crop_size that is a multiple of"
        f" {multiple}" + (" or a smaller U-Net (unet_128)." if multiple > 128 else "."))
  min_d = 2 ** (3 if config.netD == "basic" else config.n_layers_D) * 3 if config.netD != "pixel" else 1
  if min(height, width) < min_d:
    raise ValueError(f"config.crop_size: {height}x{width} is too small for netD={config.netD!r} (needs >= {min_d}).")


def count_params(params: Any) -> int:
  """Number of trainable parameters (the official `print_networks` count)."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def param_shapes(module: nn.Module, input_shape: tuple[int, ...]) -> Any:
  """Variable shapes of `module` for an NHWC `input_shape`, via `jax.eval_shape` (no compute)."""
  init = functools.partial(module.init, train=False)
  return jax.eval_shape(init, {"params": jax.random.key(0)}, jnp.zeros(input_shape, jnp.float32))
