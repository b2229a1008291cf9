"""The convolution algorithms of gantx.conv (GEMM, Winograd, one-filter, XLA transposed forms) against
XLA's convolutions, values and gradients; the rules that pick a form; compute dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gantx import conv, models
from gantx.config import base_config, validate


def _config(**kw):
  c = base_config()
  c.update(kw)
  return c


def _tile(form_and_tile):
  """The Winograd tile of a (form, tile) pair, None for any other form."""
  form, tile = form_and_tile
  return tile if form == "winograd" else None


def _native_conv(x, w, s, p):
  return jax.lax.conv_general_dilated(x, w, (s, s), [(p, p)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _assert_close(a, b, tol):
  """|a - b| <= tol * (|b| + the scale of b): float32 rounding grows with the values summed, and
  outputs near zero sit among outputs of 10-30 here (Winograd's F(3, 4) on an Intel Xeon: 1.0e-4
  where b is 0.1 and the largest |b| 13.6)."""
  np.testing.assert_allclose(a, b, atol=tol * max(1.0, float(np.max(np.abs(b)))), rtol=tol)


def _assert_same_value_and_grads(f, g, *args, tol=1e-4):
  _assert_close(f(*args), g(*args), tol)
  loss = lambda h: lambda *a: jnp.sum(jnp.sin(h(*a)))
  for a, b in zip(jax.grad(loss(f), argnums=(0, 1))(*args), jax.grad(loss(g), argnums=(0, 1))(*args)):
    _assert_close(a, b, tol)


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 9, 10, 3), 4, 2, 1),  # odd input: the last row and column are not read
    ((1, 8, 9, 4), 4, 1, 1),  # the PatchGAN's stride-1 layers
    ((1, 10, 11, 3), 3, 2, 1),  # the ResNet's downsampling
    ((1, 7, 8, 2), 3, 1, 0),  # the ResNet blocks (reflect-padded outside)
    ((2, 2, 2, 5), 4, 2, 1),  # the U-Net's innermost level
])
def test_conv_gemm_equals_the_native_convolution(shape, kernel, stride, padding):
  """float32 GEMM form: the same outputs and gradients (its own backward) as XLA's convolution."""
  with jax.default_matmul_precision("highest"):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, shape[-1], 3))
    _assert_same_value_and_grads(lambda x, w: conv.conv_gemm(x, w, stride, padding, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, stride, padding), x, w)


@pytest.mark.parametrize("m,r", [(4, 3), (2, 3), (3, 4)])
def test_winograd_matrices_compute_a_correlation(m, r):
  """A^T [(G g) * (B^T d)] = sum_k d[i + k] g[k] for random tiles: the 1-D identity behind F(m, r)."""
  at, g, bt = conv.winograd_matrices(m, r)
  rng = np.random.default_rng(0)
  d, w = rng.normal(size=m + r - 1), rng.normal(size=r)
  np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), np.correlate(d, w, mode="valid"), atol=1e-12)


@pytest.mark.parametrize("m,kernel,shape", [
    (4, 3, (2, 9, 11, 5)),  # float32 3x3; 7x9 outputs: partial tiles on both axes
    (2, 3, (1, 6, 7, 3)),  # bfloat16's 3x3 tile, here in float32
    (3, 4, (1, 9, 8, 4)),  # float32 4x4 (PatchGAN)
    (4, 3, (1, 3, 3, 2)),  # one output pixel
])
def test_winograd_conv_equals_the_native_convolution(m, kernel, shape):
  """Winograd's F(m, r): the outputs and gradients (its own backward) of XLA's unpadded convolution."""
  with jax.default_matmul_precision("highest"):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, shape[-1], 3))
    _assert_same_value_and_grads(lambda x, w: conv.conv_winograd(x, w, m, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, 1, 0), x, w)


def test_winograd_rule():
  """Which layers take Winograd's form: wide 3x3 and 4x4 stride-1 layers (4x4 in bfloat16 as four
  2x2), wide stride-2 4x4 layers with outputs of 32x32 or more, nothing on conv_impl='xla'; such a
  stride-2 layer gives XLA's convolution."""
  def tile(c, f, k, s=1, hw=64, dtype="float32", impl="gemm"):
    return _tile(conv.conv_form((1, hw, hw, c), f, k, s, 1 if k == 4 else 0, dtype, impl))
  assert [tile(256, 256, 3), tile(256, 512, 4, hw=32), tile(256, 256, 3, dtype="bfloat16"),
          tile(256, 512, 4, hw=32, dtype="bfloat16"), tile(64, 128, 4, 2), tile(64, 128, 4, 2, dtype="bfloat16")
          ] == [(4, 3), (3, 4), (2, 3), (2, 2), (3, 2), (3, 2)]
  assert {tile(128, 256, 4, 2, hw=32), tile(64, 128, 3, 2), tile(32, 256, 3),
          tile(256, 1, 4), tile(256, 256, 3, impl="xla"), tile(256, 256, 7)} == {None}
  layer, x = models.Conv(128, 4, 2, 1, use_bias=False), jax.random.normal(jax.random.key(0), (1, 64, 64, 64))
  params = layer.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(layer.apply(params, x), _native_conv(x, params["params"]["kernel"], 2, 1), atol=1e-4)


def test_gemm_rule():
  """Which float32 layers take the GEMM form (without Winograd's): 4x4 from 64 input channels; 3x3
  with >= 128 input channels at outputs of 16x16 or less, or with stride 2 at any size (the
  ResNet's 128 -> 256 downsampling, whose native gradients are slow); the layer then gives XLA's
  convolution."""
  no_winograd = conv.Rules(winograd_min_channels=2**31)

  def gemm(c, f, k, s=1, hw=64, impl="gemm"):
    return conv.conv_form((1, hw, hw, c), f, k, s, 1, "float32", impl, no_winograd)[0] == "gemm"
  assert [gemm(64, 128, 4, 2), gemm(128, 256, 3, 2, hw=128), gemm(256, 256, 3, hw=16), gemm(128, 256, 3, 2, hw=32)
          ] == [True] * 4
  assert {gemm(32, 64, 4, 2), gemm(64, 128, 3, 2, hw=256), gemm(256, 256, 3, hw=64), gemm(128, 256, 3, 2, impl="xla"),
          gemm(3, 64, 7, hw=256)} == {False}
  layer, x = models.Conv(16, 3, 2, 1, use_bias=False), jax.random.normal(jax.random.key(0), (1, 34, 34, 128))
  assert gemm(128, 16, 3, 2, hw=34)  # a 17x17 output: above gemm_max_pixels, GEMM by the stride-2 rule
  params = layer.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    _assert_close(layer.apply(params, x), _native_conv(x, params["params"]["kernel"], 2, 1), 1e-4)


@pytest.mark.parametrize("shape,kernel,stride,padding,tile", [
    ((1, 9, 10, 4), 4, 1, 1, (3, 4)),  # the PatchGAN's stride-1 layer
    ((1, 9, 10, 4), 4, 1, 1, (2, 2)),  # ... split into four 2x2 kernels (bfloat16's form)
    ((2, 8, 7, 3), 4, 1, 0, (3, 2)),  # split, partial tiles
    ((2, 12, 14, 3), 4, 2, 1, (3, 2)),  # stride 2 (U-Net encoder, PatchGAN)
    ((1, 11, 9, 2), 4, 2, 1, (3, 2)),  # odd sizes: the last row and column are not read
    ((1, 8, 8, 2), 4, 2, 0, (3, 2)),
])
def test_winograd_padded_and_strided_conv_equals_the_native_convolution(shape, kernel, stride, padding, tile):
  with jax.default_matmul_precision("highest"):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, shape[-1], 3))
    _assert_same_value_and_grads(lambda x, w: conv.winograd_conv(x, w, stride, padding, tile, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, stride, padding), x, w)


@pytest.mark.parametrize("stride", [1, 2])
def test_one_filter_conv_equals_the_native_convolution(stride):
  """The PatchGAN's last layer: its own weight gradient."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 10, 6))
  w = jax.random.normal(jax.random.key(1), (4, 4, 6, 1))
  _assert_same_value_and_grads(lambda x, w: conv.conv_one_filter(x, w, stride, 1),
                               lambda x, w: _native_conv(x, w, stride, 1), x, w)


@pytest.mark.parametrize("kernel,padding,output_padding,shape,features", [
    (4, 1, 0, (2, 5, 6, 7), 4),  # U-Net
    (3, 1, 1, (2, 5, 6, 7), 4),  # ResNet
    (4, 1, 0, (1, 20, 20, 40), 2),  # the U-Net's last layer: wide input, k*k*features < channels
])
def test_conv_transpose_xla_equals_gemm(kernel, padding, output_padding, shape, features):
  """ConvTranspose with conv_impl='xla' (`conv_transpose_xla`, what GPUs run) gives
  the GEMM + col2im form's outputs and gradients, for the same parameters."""
  x = jax.random.normal(jax.random.key(0), shape)
  make = lambda impl: models.ConvTranspose(features, kernel, 2, padding, output_padding, conv_impl=impl)
  params = make("gemm").init(jax.random.key(1), x)["params"]
  apply = lambda impl: lambda x, kernel: make(impl).apply({"params": {**params, "kernel": kernel}}, x)
  with jax.default_matmul_precision("highest"):
    _assert_same_value_and_grads(apply("xla"), apply("gemm"), x, params["kernel"])


@pytest.mark.parametrize("shape", [(2, 5, 6, 7), (1, 8, 8, 3)])
def test_winograd_conv_transpose_equals_gemm(shape):
  """The 4x4 stride-2 transposed convolution as the adjoint of the Winograd convolution: the
  outputs and gradients of GEMM + col2im."""
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (shape[-1], 4, 4, 5))
  with jax.default_matmul_precision("highest"):
    _assert_same_value_and_grads(lambda x, w: conv.winograd_conv_transpose(x, w, 2, 1, (3, 2), jnp.dtype("float32")),
                                 lambda x, w: conv.conv_transpose_gemm(x, w, 2, 1, 0, jnp.dtype("float32")), x, w)


def test_winograd_conv_transpose_rule():
  """Wide 4x4 stride-2 layers from 64x64 inputs (the U-Net's 64x64 -> 128x128 level) in float32;
  not in bfloat16, narrower, smaller, with output padding (the ResNet's) or on conv_impl='xla'."""
  def tile(c, f, hw, k=4, op=0, dtype="float32", impl="gemm"):
    return _tile(conv.conv_transpose_form((1, hw, hw, c), f, k, 2, op, dtype, impl))
  assert tile(256, 64, 64) == (3, 2)
  assert {tile(256, 64, 64, dtype="bfloat16"), tile(512, 128, 32), tile(128, 3, 128), tile(128, 64, 64, k=3, op=1),
          tile(256, 64, 64, impl="xla")} == {None}
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 64))
  layer = models.ConvTranspose(64, 4)
  params = layer.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(layer.apply(params, x), conv.conv_transpose_gemm(
        x, params["params"]["kernel"], 2, 1, 0, jnp.dtype("float32")) + params["params"]["bias"], atol=1e-4)


def test_conv_impl_auto_is_gemm_on_cpu_and_checked():
  assert jax.default_backend() == "cpu" and conv.resolve_conv_impl("auto") == "gemm"
  assert [conv.resolve_conv_impl(i) for i in ("xla", "gemm")] == ["xla", "gemm"]
  with pytest.raises(ValueError, match="config.conv_impl='cudnn'"):
    conv.resolve_conv_impl("cudnn")
  with pytest.raises(ValueError, match="conv_impl"):
    models.Conv(16, 3, conv_impl="auto").init(jax.random.key(0), jnp.zeros((1, 4, 4, 16)))
  config = _config(conv_impl="cudnn")
  with pytest.raises(ValueError, match="config.conv_impl"):
    validate(config)
  assert isinstance(models.define_G(_config(netG="unet_32")).layers, models.Layers)
  del config["conv_impl"]  # a run written before the field existed
  assert models.define_G(config).layers.conv_impl == "gemm"


@pytest.mark.parametrize("conv_impl", ["gemm", "xla"])
def test_bfloat16_layers_are_close_to_float32_and_keep_float32_parameters(conv_impl):
  """Layers wide enough for the bfloat16 GEMM path (or XLA's bfloat16 convolutions): parameters
  float32 and identical to the float32 layer's, outputs float32 within bfloat16 rounding
  (relative error < 2%), gradients finite and within 5% (relative L2 norm) of the float32 ones."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 32))
  for make in (lambda d: models.Conv(32, 4, 2, 1, compute_dtype=d, conv_impl=conv_impl),
               lambda d: models.Conv(32, 3, 1, 1, compute_dtype=d, conv_impl=conv_impl),
               lambda d: models.ConvTranspose(16, 4, compute_dtype=d, conv_impl=conv_impl)):
    f32, bf16 = make("float32"), make("bfloat16")
    if isinstance(bf16, models.Conv):
      form = conv.conv_form(x.shape, bf16.features, bf16.kernel_size, bf16.strides, bf16.padding, "bfloat16", conv_impl)
      assert (form[0] == "gemm") == (conv_impl == "gemm")
    p32, p16 = f32.init(jax.random.key(1), x), bf16.init(jax.random.key(1), x)
    for a, b in zip(jax.tree.leaves(p32), jax.tree.leaves(p16)):
      assert b.dtype == jnp.float32
      np.testing.assert_array_equal(a, b)
    y32, y16 = f32.apply(p32, x), bf16.apply(p32, x)
    assert y16.dtype == jnp.float32
    assert float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32)) < 0.02
    g32, g16 = (jax.grad(lambda p, x: jnp.sum(jnp.sin(m.apply(p, x))), argnums=(0, 1))(p32, x) for m in (f32, bf16))
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g16)):
      assert b.dtype == a.dtype and bool(jnp.all(jnp.isfinite(b)))
      assert float(jnp.linalg.norm(b - a) / jnp.linalg.norm(a)) < 0.05


@pytest.mark.parametrize("kernel,stride,hw,tile", [(3, 1, 12, (2, 3)), (4, 1, 12, (2, 2)), (4, 2, 64, (3, 2))])
def test_bfloat16_winograd_layers_are_close_to_float32(kernel, stride, hw, tile):
  """The bfloat16 Winograd rules (ResNet 3x3, the PatchGAN's stride-1 4x4 as four 2x2, stride-2
  4x4) on 64 channels: outputs within 2% (relative L2) of XLA's float32 convolution, gradients
  within 5%."""
  x = jax.random.normal(jax.random.key(0), (1, hw, hw, 64))
  layer = models.Conv(64, kernel, stride, 1, use_bias=False, compute_dtype="bfloat16")
  assert conv.conv_form(x.shape, 64, kernel, stride, 1, "bfloat16", "gemm") == ("winograd", tile)
  kernel_ = layer.init(jax.random.key(1), x)["params"]["kernel"]
  f16 = lambda x, k: layer.apply({"params": {"kernel": k}}, x)
  f32 = lambda x, k: _native_conv(x, k, stride, 1)
  with jax.default_matmul_precision("highest"):
    (y16, v16), (y32, v32) = (jax.vjp(f, x, kernel_) for f in (f16, f32))
    dy = jax.random.normal(jax.random.key(2), y32.shape)
    rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
    assert y16.dtype == jnp.float32 and rel(y16, y32) < 0.02
    for a, b in zip(v16(dy), v32(dy)):
      assert rel(a, b) < 0.05


def test_compute_dtype_is_checked():
  with pytest.raises(ValueError, match="compute_dtype"):
    models.Conv(16, 3, compute_dtype="float16").init(jax.random.key(0), jnp.zeros((1, 4, 4, 16)))


# --- the error of each form at full width, against float64

def _conv_f64(x, w, s, p):
  """NHWC x HWIO convolution (stride s, zero padding p) in float64, by numpy."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  k = w.shape[0]
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]  # (n, h, w, c, k, k)
  return np.einsum("nhwcab,abcf->nhwf", win, np.asarray(w, np.float64))


def _conv_transpose_f64(x, w, s, p, output_padding):
  """PyTorch's ConvTranspose2d of NHWC x with w (in, k, k, out) in float64: out[s*i + a - p] += x[i] w[a]."""
  n, h, wd, c = x.shape
  k, f = w.shape[1], w.shape[-1]
  oh, ow = (h - 1) * s - 2 * p + k + output_padding, (wd - 1) * s - 2 * p + k + output_padding
  full = np.zeros((n, (h - 1) * s + k + output_padding, (wd - 1) * s + k + output_padding, f))
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  for a in range(k):
    for b in range(k):
      full[:, a:a + s * (h - 1) + 1:s, b:b + s * (wd - 1) + 1:s] += np.einsum("nhwc,cf->nhwf", x, w[:, a, b])
  return full[:, p:p + oh, p:p + ow]


# (what, kernel, stride, padding, in channels, out channels, input side, the training form, bound on
# its error, the inference form): full-width layers of the official networks. Bounds: relative L2
# error against float64, about 3x what was measured on 2026-12-04 (Winograd F(4, 3) and F(3, 4):
# 3.2e-6 and 3.1e-6, F(3, 2): 6.8e-7, the direct forms 2-5.5e-7, as XLA's own convolution).
FULL_WIDTH_LAYERS = [
    ("ResNet block 3x3", 3, 1, 1, 256, 256, 64, "winograd", 1e-5, "native"),
    ("PatchGAN stride-1 4x4", 4, 1, 1, 256, 512, 32, "winograd", 1e-5, "gemm"),
    ("U-Net encoder stride-2 4x4", 4, 2, 1, 128, 256, 64, "winograd", 2e-6, "gemm"),
    ("U-Net inner stride-2 4x4", 4, 2, 1, 512, 512, 8, "gemm", 1.5e-6, "gemm"),
    ("ResNet downsampling stride-2 3x3", 3, 2, 1, 128, 256, 128, "gemm", 1.5e-6, "gemm"),
    ("PatchGAN last layer, one filter", 4, 1, 1, 512, 1, 32, "one_filter", 1.5e-6, "one_filter"),
    ("ResNet first layer 7x7", 7, 1, 3, 3, 64, 64, "native", 1.5e-6, "native"),
]
FULL_WIDTH_TRANSPOSED = [
    ("U-Net 64x64 -> 128x128 level", 4, 0, 256, 64, 64, "winograd", 1.5e-6, "gemm"),
    ("U-Net inner level", 4, 0, 1024, 512, 8, "gemm", 1.5e-6, "gemm"),
    ("ResNet upsampling", 3, 1, 256, 128, 64, "gemm", 1.5e-6, "gemm"),
]
INFERENCE_BOUND = 1.5e-6  # no Winograd: as XLA's own float32 convolution (2.9-5.5e-7 here)


def _rel(y, ref):
  return float(np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("layer", FULL_WIDTH_LAYERS, ids=[layer[0] for layer in FULL_WIDTH_LAYERS])
def test_full_width_convolution_errors(layer):
  """Each form's float32 error at full width: Winograd's larger tiles round more (F(4, 3) and F(3, 4)
  magnify by their +-2 points), the direct forms as XLA's convolution; inference takes no Winograd."""
  _, k, s, p, c, f, side, training_form, bound, inference_form = layer
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (1, side, side, c)).astype(np.float32)
  w = (rng.standard_normal((k, k, c, f)) / np.sqrt(k * k * c)).astype(np.float32)
  ref = _conv_f64(x, w, s, p)
  for rules, form, limit in ((conv.RULES, training_form, bound), (conv.INFERENCE_RULES, inference_form, INFERENCE_BOUND)):
    assert conv.conv_form(x.shape, f, k, s, p, "float32", "gemm", rules)[0] == form
    y = conv.conv(jnp.asarray(x), jnp.asarray(w), s, p, dtype="float32", impl="gemm", rules=rules)
    assert _rel(y, ref) < limit, (form, _rel(y, ref))


@pytest.mark.parametrize("layer", FULL_WIDTH_TRANSPOSED, ids=[layer[0] for layer in FULL_WIDTH_TRANSPOSED])
def test_full_width_transposed_convolution_errors(layer):
  _, k, op, c, f, side, training_form, bound, inference_form = layer
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (1, side, side, c)).astype(np.float32)
  w = (rng.standard_normal((c, k, k, f)) / np.sqrt(k * k * c / 4)).astype(np.float32)
  ref = _conv_transpose_f64(x, w, 2, 1, op)
  for rules, form, limit in ((conv.RULES, training_form, bound), (conv.INFERENCE_RULES, inference_form, INFERENCE_BOUND)):
    assert conv.conv_transpose_form(x.shape, f, k, 2, op, "float32", "gemm", rules)[0] == form
    y = conv.conv_transpose(jnp.asarray(x), jnp.asarray(w), 2, 1, op, dtype="float32", impl="gemm", rules=rules)
    assert _rel(y, ref) < limit, (form, _rel(y, ref))
