"""Networks: official parameter counts, shapes, padding, bias rule, init, dropout, size checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gantx import models
from gantx.config import base_config, validate


def _config(**kw):
  c = base_config()
  c.update(kw)
  return c


# Official counts (reference section 2.5); eval_shape only, nothing compiles.
@pytest.mark.parametrize("netG,norm,size,expected", [
    ("unet_256", "batch", 256, 54_413_955),
    ("unet_128", "batch", 128, 41_828_995),
    ("unet_256", "instance", 256, 54_409_603),
    ("resnet_9blocks", "instance", 256, 11_378_179),
    ("resnet_6blocks", "instance", 256, 7_837_699),
    ("resnet_9blocks", "batch", 256, 11_383_427),
])
def test_generator_parameter_counts(netG, norm, size, expected):
  shapes = models.param_shapes(models.define_G(_config(netG=netG, norm=norm)), (1, size, size, 3))
  assert models.count_params(shapes["params"]) == expected


@pytest.mark.parametrize("netD,norm,channels,expected", [
    ("basic", "batch", 6, 2_768_705),
    ("basic", "instance", 3, 2_764_737),
    ("basic", "batch", 3, 2_765_633),
    ("pixel", "batch", 6, 9_024),
])
def test_discriminator_parameter_counts(netD, norm, channels, expected):
  shapes = models.param_shapes(models.define_D(_config(netD=netD, norm=norm), channels), (1, 256, 256, channels))
  assert models.count_params(shapes["params"]) == expected


def test_output_shapes_without_compiling():
  c = _config(netG="unet_256")
  g = models.define_G(c)
  out = jax.eval_shape(lambda x: g.init_with_output({"params": jax.random.key(0)}, x, train=False)[0],
                       jax.ShapeDtypeStruct((2, 256, 512, 3), jnp.float32))
  assert out.shape == (2, 256, 512, 3)  # non-square works where sizes divide
  d = models.define_D(c, 6)
  out = jax.eval_shape(lambda x: d.init_with_output(jax.random.key(0), x, train=False)[0],
                       jax.ShapeDtypeStruct((1, 256, 256, 6), jnp.float32))
  assert out.shape == (1, 30, 30, 1)  # the 70x70 PatchGAN map
  r = models.define_G(_config(netG="resnet_9blocks", norm="instance"), 1, 3)
  out = jax.eval_shape(lambda x: r.init_with_output(jax.random.key(0), x, train=False)[0],
                       jax.ShapeDtypeStruct((1, 36, 20, 1), jnp.float32))
  assert out.shape == (1, 36, 20, 3)


def test_unet_and_resnet_run_on_small_images():
  for c, shape in [(_config(netG="unet_32", ngf=2), (2, 32, 64, 3)),
                   (_config(netG="resnet_2blocks", ngf=2, norm="instance"), (1, 12, 16, 3))]:
    g = models.define_G(c)
    x = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
    variables = g.init(jax.random.key(0), x, train=False)
    y = g.apply(variables, x, train=False)
    assert y.shape == shape and bool(jnp.all(jnp.abs(y) <= 1.0))


@pytest.mark.parametrize("kernel,output_padding", [(4, 0), (3, 1)])
def test_conv_transpose_equals_the_dilated_form(kernel, output_padding):
  """Same outputs and gradients as PyTorch's ConvTranspose2d semantics (input-dilated conv)."""
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  m = models.ConvTranspose(4, kernel, 2, 1, output_padding)
  params = m.init(jax.random.key(2), x)

  def reference(params, x):
    w, b = params["params"]["kernel"].transpose(1, 2, 0, 3), params["params"]["bias"]
    pad = [(kernel - 2, kernel - 2 + output_padding)] * 2
    return jax.lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), pad, lhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

  y, ref = m.apply(params, x), reference(params, x)
  assert y.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(y, ref, atol=1e-6)
  loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))
  g1 = jax.grad(loss(m.apply), argnums=(0, 1))(params, x)
  g2 = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_reflect_padding_matches_numpy():
  x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
  expected = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
  np.testing.assert_array_equal(models.reflect_pad(jnp.asarray(x), 3), expected)


def test_bias_rule_follows_the_norm():
  def has_bias(tree):
    return {k: "bias" in v for k, v in tree.items() if k.startswith("conv")}
  shapes = models.param_shapes(models.define_D(_config(norm="batch"), 6), (1, 64, 64, 6))["params"]
  assert has_bias(shapes) == {"conv0": True, "conv1": False, "conv2": False, "conv3": False, "conv4": True}
  shapes = models.param_shapes(models.define_D(_config(norm="instance"), 6), (1, 64, 64, 6))["params"]
  assert all(has_bias(shapes).values())
  shapes = models.param_shapes(models.define_G(_config(netG="unet_32", norm="batch")), (1, 32, 32, 3))["params"]
  outer = shapes["outer"]
  assert "bias" not in outer["down_conv"] and "bias" in outer["up_conv"]  # outermost ConvT always biased
  assert "bias" not in outer["inner"]["up_conv"]


def test_init_statistics():
  c = _config(netG="unet_256", init_gain=0.02)
  variables = models.define_G(c).init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)), train=False)
  kernel = np.asarray(variables["params"]["outer"]["inner"]["inner"]["inner"]["down_conv"]["kernel"])
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001
  scale = np.asarray(variables["params"]["outer"]["inner"]["inner"]["inner"]["down_norm"]["bn"]["scale"])
  assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03  # BatchNorm weight ~ N(1, gain)
  # kaiming_normal(fan_in) of a ConvTranspose weight (in, out, k, k): PyTorch's fan_in is out * k * k.
  init = models.kernel_init("kaiming", 0.02, transposed=True)
  w = np.asarray(init(jax.random.key(0), (512, 4, 4, 256)))
  np.testing.assert_allclose(w.std(), np.sqrt(2.0 / (256 * 16)), rtol=0.02)
  w = np.asarray(models.kernel_init("xavier", 1.0)(jax.random.key(0), (4, 4, 64, 128)))
  np.testing.assert_allclose(w.std(), np.sqrt(2.0 / (64 * 16 + 128 * 16)), rtol=0.02)


def test_dropout_is_on_in_train_mode_only():
  c = _config(netG="unet_64", ngf=2)
  g = models.define_G(c)
  x = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3))
  variables = g.init(jax.random.key(0), x, train=False)
  run = lambda key: g.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0]
  assert not np.allclose(run(jax.random.key(1)), run(jax.random.key(2)))
  c.no_dropout = True
  g = models.define_G(c)
  run = lambda key: g.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0]
  np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(2)))


def test_image_size_that_does_not_divide_is_refused_by_name():
  c = _config(netG="unet_256")
  with pytest.raises(ValueError, match=r"crop_size.*256x384.*multiples of 256"):
    models.check_image_size(c, 256, 384)
  models.check_image_size(c, 256, 512)
  with pytest.raises(ValueError, match="multiples of 4"):
    models.check_image_size(_config(netG="resnet_9blocks"), 258, 256)


# --- convolutions as GEMMs, compute dtypes

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
    _assert_same_value_and_grads(lambda x, w: models.conv_gemm(x, w, stride, padding, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, stride, padding), x, w)


@pytest.mark.parametrize("m,r", [(4, 3), (2, 3), (3, 4)])
def test_winograd_matrices_compute_a_correlation(m, r):
  """A^T [(G g) * (B^T d)] = sum_k d[i + k] g[k] for random tiles: the 1-D identity behind F(m, r)."""
  at, g, bt = models.winograd_matrices(m, r)
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
    _assert_same_value_and_grads(lambda x, w: models.conv_winograd(x, w, m, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, 1, 0), x, w)


def test_winograd_rule():
  """Which layers take Winograd's form: wide 3x3 and 4x4 stride-1 layers (4x4 in bfloat16 as four
  2x2), wide stride-2 4x4 layers with outputs of 32x32 or more, nothing on conv_impl='xla'; such a
  stride-2 layer gives XLA's convolution."""
  def tile(c, f, k, s=1, hw=64, dtype="float32", impl="gemm"):
    return models.Conv(f, k, s, 1 if k == 4 else 0, compute_dtype=dtype, conv_impl=impl).winograd_tile(hw, hw, c)
  assert [tile(256, 256, 3), tile(256, 512, 4, hw=32), tile(256, 256, 3, dtype="bfloat16"),
          tile(256, 512, 4, hw=32, dtype="bfloat16"), tile(64, 128, 4, 2), tile(64, 128, 4, 2, dtype="bfloat16")
          ] == [(4, 3), (3, 4), (2, 3), (2, 2), (3, 2), (3, 2)]
  assert {tile(128, 256, 4, 2, hw=32), tile(64, 128, 3, 2), tile(32, 256, 3),
          tile(256, 1, 4), tile(256, 256, 3, impl="xla"), tile(256, 256, 7)} == {None}
  conv, x = models.Conv(128, 4, 2, 1, use_bias=False), jax.random.normal(jax.random.key(0), (1, 64, 64, 64))
  params = conv.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(conv.apply(params, x), _native_conv(x, params["params"]["kernel"], 2, 1), atol=1e-4)


def test_gemm_rule():
  """Which float32 layers take the GEMM form (without Winograd's): 4x4 from 64 input channels; 3x3
  with >= 128 input channels at outputs of 16x16 or less, or with stride 2 at any size (the
  ResNet's 128 -> 256 downsampling, whose native gradients are slow); the layer then gives XLA's
  convolution."""
  def gemm(c, f, k, s=1, hw=64, impl="gemm"):
    return models.Conv(f, k, s, 1, conv_impl=impl).uses_gemm(hw, hw, c)
  assert [gemm(64, 128, 4, 2), gemm(128, 256, 3, 2, hw=128), gemm(256, 256, 3, hw=16), gemm(128, 256, 3, 2, hw=32)
          ] == [True] * 4
  assert {gemm(32, 64, 4, 2), gemm(64, 128, 3, 2, hw=256), gemm(256, 256, 3, hw=64), gemm(128, 256, 3, 2, impl="xla"),
          gemm(3, 64, 7, hw=256)} == {False}
  conv, x = models.Conv(16, 3, 2, 1, use_bias=False), jax.random.normal(jax.random.key(0), (1, 34, 34, 128))
  assert conv.uses_gemm(34, 34, 128)  # a 17x17 output: above gemm_max_pixels, GEMM by the stride-2 rule
  params = conv.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    _assert_close(conv.apply(params, x), _native_conv(x, params["params"]["kernel"], 2, 1), 1e-4)


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
    _assert_same_value_and_grads(lambda x, w: models.winograd_conv(x, w, stride, padding, tile, jnp.dtype("float32")),
                                 lambda x, w: _native_conv(x, w, stride, padding), x, w)


@pytest.mark.parametrize("stride", [1, 2])
def test_one_filter_conv_equals_the_native_convolution(stride):
  """The PatchGAN's last layer: its own weight gradient."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 10, 6))
  w = jax.random.normal(jax.random.key(1), (4, 4, 6, 1))
  _assert_same_value_and_grads(lambda x, w: models.conv_one_filter(x, w, stride, 1),
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
    _assert_same_value_and_grads(lambda x, w: models.winograd_conv_transpose(x, w, 2, 1, (3, 2), jnp.dtype("float32")),
                                 lambda x, w: models.conv_transpose_gemm(x, w, 2, 1, 0, jnp.dtype("float32")), x, w)


def test_winograd_conv_transpose_rule():
  """Wide 4x4 stride-2 layers from 64x64 inputs (the U-Net's 64x64 -> 128x128 level) in float32;
  not in bfloat16, narrower, smaller, with output padding (the ResNet's) or on conv_impl='xla'."""
  def tile(c, f, hw, k=4, op=0, dtype="float32", impl="gemm"):
    return models.ConvTranspose(f, k, 2, 1, op, compute_dtype=dtype, conv_impl=impl).winograd_tile(hw, hw, c)
  assert tile(256, 64, 64) == (3, 2)
  assert {tile(256, 64, 64, dtype="bfloat16"), tile(512, 128, 32), tile(128, 3, 128), tile(128, 64, 64, k=3, op=1),
          tile(256, 64, 64, impl="xla")} == {None}
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 64))
  layer = models.ConvTranspose(64, 4)
  params = layer.init(jax.random.key(1), x)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(layer.apply(params, x), models.conv_transpose_gemm(
        x, params["params"]["kernel"], 2, 1, 0, jnp.dtype("float32")) + params["params"]["bias"], atol=1e-4)


@pytest.mark.parametrize("netG,norm,shape", [("unet_32", "batch", (2, 32, 32, 3)),
                                               ("resnet_2blocks", "instance", (1, 16, 16, 3))])
def test_conv_impl_xla_equals_gemm_networks(netG, norm, shape):
  """Whole networks (widths 64, so the float32 GEMM rules apply to the 4x4 layers) with
  conv_impl 'xla' and 'gemm': same parameters, same outputs and parameter gradients."""
  configs = {impl: _config(netG=netG, norm=norm, ngf=64, ndf=64, no_dropout=True, conv_impl=impl)
             for impl in ("xla", "gemm")}
  x = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
  for define, inputs in ((lambda c: models.define_G(c), x), (lambda c: models.define_D(c, 3), x)):
    xla, gemm = define(configs["xla"]), define(configs["gemm"])
    variables = gemm.init(jax.random.key(0), inputs, train=False)
    assert jax.tree.map(jnp.shape, xla.init(jax.random.key(0), inputs, train=False)) == jax.tree.map(
        jnp.shape, variables)
    loss = lambda net: lambda p: jnp.mean(jnp.sin(3 * net.apply({**variables, "params": p}, inputs, train=True,
                                                                    mutable=["batch_stats"])[0]))
    with jax.default_matmul_precision("highest"):
      (l_xla, g_xla), (l_gemm, g_gemm) = (jax.value_and_grad(loss(n))(variables["params"]) for n in (xla, gemm))
    np.testing.assert_allclose(l_xla, l_gemm, rtol=1e-5, atol=1e-6)
    # Biases before instance norm have zero gradients (rounding noise): atol is relative to the largest gradient.
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(g_gemm))
    for a, b in zip(jax.tree.leaves(g_xla), jax.tree.leaves(g_gemm)):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale)


def test_conv_impl_auto_is_gemm_on_cpu_and_checked():
  assert jax.default_backend() == "cpu" and models.resolve_conv_impl("auto") == "gemm"
  assert [models.resolve_conv_impl(i) for i in ("xla", "gemm")] == ["xla", "gemm"]
  with pytest.raises(ValueError, match="config.conv_impl='cudnn'"):
    models.resolve_conv_impl("cudnn")
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
      assert bf16.uses_gemm(8, 8, 32) == (conv_impl == "gemm")
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
  assert layer.winograd_tile(hw, hw, 64) == tile
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


@pytest.mark.parametrize("netG,norm,shape", [("unet_32", "batch", (2, 32, 32, 3)),
                                               ("resnet_2blocks", "instance", (1, 16, 16, 3))])
def test_bfloat16_networks_match_float32(netG, norm, shape):
  """compute_dtype='bfloat16' (widths 16+, so the inner layers take the bfloat16 GEMM path):
  same parameters (float32), float32 outputs within 0.05 of the float32 network's on the tanh
  scale and D's logits within 5% (relative L2), finite gradients."""
  c32 = _config(netG=netG, norm=norm, ngf=16, ndf=16, no_dropout=True)
  c16 = _config(netG=netG, norm=norm, ngf=16, ndf=16, no_dropout=True, compute_dtype="bfloat16")
  x = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
  g32, g16 = models.define_G(c32), models.define_G(c16)
  variables = g32.init(jax.random.key(0), x, train=False)
  assert jax.tree.map(lambda a: a.dtype, variables) == jax.tree.map(
      lambda a: a.dtype, g16.init(jax.random.key(0), x, train=False))
  run = lambda g: g.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  y32, y16 = run(g32), run(g16)
  assert y16.dtype == jnp.float32 and float(jnp.max(jnp.abs(y16 - y32))) < 0.05
  d32, d16 = models.define_D(c32, 6), models.define_D(c16, 6)
  pair = jax.random.uniform(jax.random.key(3), (2, 32, 32, 6), minval=-1, maxval=1)
  dvars = d32.init(jax.random.key(2), pair, train=False)
  logits = lambda d: d.apply(dvars, pair, train=True, mutable=["batch_stats"])[0]
  l32, l16 = logits(d32), logits(d16)
  assert l16.dtype == jnp.float32 and float(jnp.linalg.norm(l16 - l32) / jnp.linalg.norm(l32)) < 0.05
  grads = jax.grad(lambda p: jnp.mean(g16.apply({**variables, "params": p}, x, train=True,
                                                  mutable=["batch_stats"])[0] ** 2))(variables["params"])
  assert all(bool(jnp.all(jnp.isfinite(g))) and g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_compute_dtype_is_checked():
  with pytest.raises(ValueError, match="compute_dtype"):
    models.Conv(16, 3, compute_dtype="float16").init(jax.random.key(0), jnp.zeros((1, 4, 4, 16)))
