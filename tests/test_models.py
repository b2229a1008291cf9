"""Networks: official parameter counts, shapes, padding, bias rule, init, dropout, size checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gantx import models
from gantx.config import base_config


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
  # lazy_init: the initialisers' values without running the 256x256 network.
  variables = models.define_G(c).lazy_init(jax.random.key(0), jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32),
                                           train=False)
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
      (l_xla, g_xla), (l_gemm, g_gemm) = (jax.jit(jax.value_and_grad(loss(n)))(variables["params"]) for n in (xla, gemm))
    np.testing.assert_allclose(l_xla, l_gemm, rtol=1e-5, atol=1e-6)
    # Biases before instance norm have zero gradients (rounding noise): atol is relative to the largest gradient.
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(g_gemm))
    for a, b in zip(jax.tree.leaves(g_xla), jax.tree.leaves(g_gemm)):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale)


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


def test_remat_blocks_changes_memory_not_numbers():
  """config.remat_blocks: the same parameters, outputs and gradients (the blocks' activations are
  recomputed in the backward pass instead of kept), and less temporary memory in XLA's plan."""
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3), minval=-1, maxval=1)
  nets = {r: models.define_G(_config(netG="resnet_2blocks", norm="instance", ngf=8, no_dropout=True, remat_blocks=r))
          for r in (False, True)}
  variables = nets[False].init(jax.random.key(0), x, train=False)
  assert jax.tree.map(jnp.shape, nets[True].init(jax.random.key(0), x, train=False)) == jax.tree.map(jnp.shape, variables)
  loss = lambda net: jax.jit(jax.value_and_grad(lambda p: jnp.mean(jnp.sin(3 * net.apply({"params": p}, x, train=True)))))
  (l0, g0), (l1, g1) = (loss(nets[r])(variables["params"]) for r in (False, True))
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  temp = [loss(nets[r]).lower(variables["params"]).compile().memory_analysis().temp_size_in_bytes for r in (False, True)]
  assert temp[1] < temp[0], temp
