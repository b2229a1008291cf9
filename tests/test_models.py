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
