"""Convolution algorithms for XLA:CPU, and the choice of form for each layer.

`models.Conv` and `models.ConvTranspose` hold the parameters; each calls one function here,
`conv` or `conv_transpose`, which picks the form a layer of that shape runs (`conv_form`,
`conv_transpose_form`) and computes it. Every form gives the numbers of PyTorch's Conv2d /
ConvTranspose2d up to float rounding (tests/test_conv.py); the choice is static, by shape,
compute dtype and `impl`:

  'xla'         XLA's own convolutions (cuDNN on GPUs, the MXU on TPUs): what GPUs and TPUs run
                (`config.conv_impl='auto'` there), with a custom gradient for transposed ones
                (`conv_transpose_xla`);
  'gemm'        XLA:CPU's rules (`Rules`): Winograd's minimal filtering for the wide 3x3 and 4x4
                layers (`winograd_conv`, `winograd_conv_transpose`), im2col GEMMs with GEMM
                gradients (`conv_gemm`, `conv_transpose_gemm`), a GEMM backward for the
                PatchGAN's one-filter last layer (`conv_one_filter`), XLA's convolution elsewhere.

Why (BENCHMARKS.md has each measurement): XLA:CPU runs a dot at full speed (YNNPACK, float32 and
bfloat16) only when the left operand's contracted dimension is its minor one; a weight gradient
(sum over pixels, the major dimension of both operands) otherwise falls back to a slow float32
dot, and XLA's native convolutions neither reach the GEMM rate in bfloat16 nor have fast
gradients at small spatial sizes. The functions below write forward and backward passes as
explicit GEMMs: im2col + GEMM for a convolution, GEMM + col2im for a transposed one, each the
other's adjoint; operands in the compute dtype, accumulation and results in float32.

Layouts: images NHWC; a convolution kernel is HWIO (k, k, in, out); a transposed convolution's
kernel is (in, k, k, out), PyTorch's ConvTranspose2d weight (in, out, k, k) transposed by
(0, 2, 3, 1), unflipped.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gantx import config as config_lib

Array = jax.Array
_CONV_DIMS = ("NHWC", "HWIO", "NHWC")

# ----------------------------------------------------------------------------- GEMM forms

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


def native_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
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
  return jax.linear_transpose(lambda z: native_conv(z, kernel, stride, padding), y)(x)[0]


def _conv_transpose_xla_fwd(x, kernel, stride, padding, out_hw):
  return conv_transpose_xla(x, kernel, stride, padding, out_hw), (x, kernel)


def _conv_transpose_xla_bwd(stride, padding, out_hw, res, dy):
  x, kernel = res
  dx = native_conv(dy, kernel, stride, padding)
  dk = jax.vjp(lambda k: native_conv(dy, k, stride, padding), kernel)[1](x)[0]
  return dx, dk


conv_transpose_xla.defvjp(_conv_transpose_xla_fwd, _conv_transpose_xla_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_one_filter(x: Array, kernel: Array, stride: int, padding: int) -> Array:
  """A float32 convolution with one output channel (the PatchGAN's last layer), XLA's native one
  except for the backward: XLA:CPU computes the weight gradient as a convolution at ~1 GFLOP/s
  and the input gradient as one from a single channel. Here both are GEMMs over `_tap_planes` of
  the output gradient (k*k channels, the size of x): dx = planes @ kernel, dkernel = planes^T x."""
  return native_conv(x.astype(_F32), kernel, stride, padding)


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


# ----------------------------------------------------------------------------- Winograd

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


# ----------------------------------------------------------------------------- the choice of form


def _check_impl(name: str) -> str:
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


def compute_dtype(name: str) -> Any:
  """config.compute_dtype -> the jnp dtype of the products; ValueError naming the field."""
  if name not in config_lib.COMPUTE_DTYPES:
    raise ValueError(f"config.compute_dtype={name!r} is not one of {config_lib.COMPUTE_DTYPES}.")
  return jnp.dtype(name)


@dataclasses.dataclass(frozen=True)
class Rules:
  """Which form a layer takes under impl='gemm' (XLA:CPU), by shape and compute dtype.

  Winograd first: layers with at least `winograd_min_channels` input and output channels take
  `winograd_conv`: the ResNet blocks' 3x3 by F(4, 3) in float32 and F(2, 3) in bfloat16, the
  stride-2 4x4 layers with outputs of at least `winograd_min_pixels_strided` (U-Net encoder,
  PatchGAN) by F(3, 2) on their space-to-depth input in both, and the PatchGAN's stride-1 4x4 by
  F(3, 4) in float32, as four shifted 2x2 kernels by F(2, 2) in bfloat16 (`_WINOGRAD_TILE`).
  Transposed: the float32 4x4 stride-2 layers with `winograd_min_pixels_transposed` input pixels
  (the U-Net's 64x64 -> 128x128 level) as the adjoint of the stride-2 Winograd convolution.

  Then GEMMs. In float32, XLA:CPU's weight gradients of the 4x4 convolutions (U-Net encoder,
  PatchGAN) are slow at every size, so those take `conv_gemm` from `gemm_min_channels_4x4` input
  channels; other kernels (the ResNet's 3x3, fastest native at 64x64 and above) only at outputs of
  `gemm_max_pixels` and less with >= `gemm_min_channels` channels, or with stride 2 and >=
  `gemm_min_channels` channels (the ResNet's 128 -> 256 downsampling: its native gradients are
  slow). In bfloat16 every layer with at least `gemm_min_channels_bf16` input and output channels
  takes the GEMM form, since only GEMMs run at bfloat16 speed. Transposed convolutions not taken by
  Winograd are always GEMM + col2im. The PatchGAN's 1-channel last layer on >= `gemm_min_channels`
  channels gets its own backward (`conv_one_filter`). Thin layers (the RGB ends) stay native and
  float32.
  """

  gemm_max_pixels: int = 16 * 16
  gemm_min_channels: int = 128
  gemm_min_channels_4x4: int = 64
  gemm_min_channels_bf16: int = 16
  winograd_min_channels: int = 64
  winograd_min_pixels_strided: int = 32 * 32
  winograd_min_pixels_transposed: int = 64 * 64
  # False: no Winograd form, whose float32 error at full width is up to ~5x the direct form's
  # (BENCHMARKS.md, "Convolution error"): what inference uses (INFERENCE_RULES).
  winograd: bool = True
  # False: a GEMM form where XLA's own convolution would run. Under jax.vmap with per-replica
  # kernels (a seed study) XLA's convolutions become grouped convolutions, slow on XLA:CPU: a study
  # of 4 quickstart replicas took 1.37x a run's time per replica with them, 0.96x without
  # (BENCHMARKS.md, "Seed studies"). What studies use (STUDY_RULES).
  native: bool = True


RULES = Rules()  # training
INFERENCE_RULES = Rules(winograd=False)  # translate, evaluate, export, the evaluations during training
STUDY_RULES = Rules(native=False)  # training N replicas under vmap


def conv_form(in_shape: tuple[int, ...], features: int, kernel_size: int, stride: int, padding: int,
              dtype: str, impl: str, rules: Rules = RULES) -> tuple[str, tuple[int, int] | None]:
  """(form, tile) of a convolution of an NHWC `in_shape` to `features` channels.

  form is 'xla' (impl='xla': XLA's convolution in `dtype`), or under impl='gemm' one of
  'winograd' (tile: the (m, r) of its F(m, r)), 'gemm', 'one_filter' or 'native' (XLA's, float32).
  """
  _, h, w, c = in_shape
  k, s, p = kernel_size, stride, padding
  if _check_impl(impl) == "xla":
    return "xla", None
  out_h, out_w = _conv_out_hw(h, w, k, s, p)
  if min(c, features) >= rules.winograd_min_channels and (s == 1 or out_h * out_w >= rules.winograd_min_pixels_strided):
    if rules.winograd and (tile := _WINOGRAD_TILE.get((dtype, k, s))) is not None:
      return "winograd", tile
  if not rules.native:
    return "gemm", None
  if features != 1:
    if dtype == "bfloat16":
      gemm = min(c, features) >= rules.gemm_min_channels_bf16
    elif k == 4:
      gemm = c >= rules.gemm_min_channels_4x4
    else:
      gemm = k > 1 and c >= rules.gemm_min_channels and (out_h * out_w <= rules.gemm_max_pixels or s == 2)
    if gemm:
      return "gemm", None
  elif k > 1 and c >= rules.gemm_min_channels:
    return "one_filter", None
  return "native", None


def conv(x: Array, kernel: Array, stride: int, padding: int, *, dtype: str, impl: str,
         rules: Rules = RULES) -> Array:
  """PyTorch's Conv2d(stride, padding) of NHWC `x` with an HWIO `kernel`, no bias, in the form
  `conv_form` picks: products in `dtype`, a float32 result."""
  dt = compute_dtype(dtype)
  form, tile = conv_form(x.shape, kernel.shape[-1], kernel.shape[0], stride, padding, dtype, impl, rules)
  if form == "xla":
    return native_conv(x.astype(dt), kernel.astype(dt), stride, padding).astype(_F32)
  if form == "winograd":
    return winograd_conv(x, kernel, stride, padding, tile, dt)
  if form == "gemm":
    return conv_gemm(x, kernel, stride, padding, dt)
  if form == "one_filter":
    return conv_one_filter(x, kernel, stride, padding)
  return native_conv(x.astype(_F32), kernel, stride, padding)


def conv_transpose_form(in_shape: tuple[int, ...], features: int, kernel_size: int, stride: int, output_padding: int,
                        dtype: str, impl: str, rules: Rules = RULES) -> tuple[str, tuple[int, int] | None]:
  """(form, tile) of a transposed convolution: 'xla', 'winograd' (with its tile) or 'gemm'."""
  _, h, w, c = in_shape
  if _check_impl(impl) == "xla":
    return "xla", None
  if (rules.winograd and not output_padding and min(c, features) >= rules.winograd_min_channels
      and h * w >= rules.winograd_min_pixels_transposed):
    if (tile := _WINOGRAD_TILE_TRANSPOSED.get((dtype, kernel_size, stride))) is not None:
      return "winograd", tile
  return "gemm", None


def conv_transpose(x: Array, kernel: Array, stride: int, padding: int, output_padding: int, *, dtype: str,
                   impl: str, rules: Rules = RULES) -> Array:
  """PyTorch's ConvTranspose2d(stride, padding, output_padding) of NHWC `x`, `kernel` (in, k, k, out),
  no bias, in the form `conv_transpose_form` picks: products in `dtype`, a float32 result."""
  _, h, w, _ = x.shape
  k, features = kernel.shape[1], kernel.shape[-1]
  out_h, out_w = _conv_transpose_out_hw(h, w, k, stride, padding, output_padding)
  if out_h % stride or out_w % stride:
    raise ValueError(f"ConvTranspose: output {out_h}x{out_w} is not a multiple of stride {stride}.")
  dt = compute_dtype(dtype)
  form, tile = conv_transpose_form(x.shape, features, k, stride, output_padding, dtype, impl, rules)
  if form == "xla":
    # (in, k, k, features) -> F's HWIO kernel (k, k, features, in): PyTorch's weight array is the
    # same for a ConvTranspose2d and for the Conv2d whose adjoint it is.
    return conv_transpose_xla(x.astype(dt), kernel.transpose(1, 2, 3, 0).astype(dt), stride, padding,
                              (out_h, out_w)).astype(_F32)
  if form == "winograd":
    return winograd_conv_transpose(x, kernel, stride, padding, tile, dt)
  return conv_transpose_gemm(x, kernel, stride, padding, output_padding, dt)
