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

The layers hold parameters; how a convolution is computed (XLA's convolution, or the GEMM and
Winograd forms that are fast on XLA:CPU) is `gantx.conv`'s business.
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
from gantx import conv as conv_lib

Array = jax.Array


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


class ConvTranspose(nn.Module):
  """PyTorch `ConvTranspose2d(in, features, k, stride, padding, output_padding)`, square kernel.

  Computed by `conv.conv_transpose` in the form its rules pick for the layer's shape (on XLA:CPU
  the gradients of the zero-inserting form, `nn.ConvTranspose`, are ~30x slower than its
  forward; BENCHMARKS.md). The kernel has layout (in, k, k, features): PyTorch's weight
  (in, out, k, k) transposed by (0, 2, 3, 1), unflipped, so that x @ kernel.reshape(in, -1) needs
  no copy. It is float32 whatever `compute_dtype` ('bfloat16' casts it, and x, for the products only).
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
  rules: conv_lib.Rules = conv_lib.RULES

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], k, k, self.features), jnp.float32)
    y = conv_lib.conv_transpose(x, kernel, self.strides, self.padding, self.output_padding,
                                dtype=self.compute_dtype, impl=self.conv_impl, rules=self.rules)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y


class Conv(nn.Module):
  """`nn.Conv` with symmetric zero padding, computed by `conv.conv` in the form its rules pick
  (`conv.conv_form`: XLA's convolution, or on XLA:CPU a GEMM or Winograd form); every form gives
  the same numbers up to rounding. The kernel is HWIO, float32 whatever `compute_dtype`."""

  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Callable[..., Array] = nn.initializers.normal(0.02)
  compute_dtype: str = "float32"
  conv_impl: str = "gemm"  # 'gemm' or 'xla' (Layers resolves config.conv_impl='auto')
  rules: conv_lib.Rules = conv_lib.RULES

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    y = conv_lib.conv(x, kernel, self.strides, self.padding, dtype=self.compute_dtype, impl=self.conv_impl,
                      rules=self.rules)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y


def reflect_pad(x: Array, pad: int) -> Array:
  """`nn.ReflectionPad2d(pad)` on NHWC."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class BatchNorm(nn.Module):
  """PyTorch's `BatchNorm2d(eps=1e-5, momentum=0.1)` on NHWC, buffers included.

  train=True normalises with the batch's mean and biased variance and, where `batch_stats` is
  mutable, updates the running statistics as PyTorch does: running_mean <- 0.9 running_mean +
  0.1 mean, running_var <- 0.9 running_var + 0.1 * n / (n - 1) * variance (the unbiased batch
  variance, n = the values each channel averages: batch x H x W; `flax.linen.BatchNorm` uses the
  biased one), and counts the call in `num_batches_tracked`. Under jit over a data mesh the batch
  is one global array, so these are the statistics of the global batch (synchronised batch norm)
  and n counts it whole. train=False uses the running statistics.

  Variables: params `scale` ~ N(1, init_gain) and `bias` (PyTorch's weight and bias); batch_stats
  `mean`, `var` and `num_batches_tracked` (int32). The arithmetic of the normalisation is that of
  `flax.linen.BatchNorm(use_fast_variance=False)`.
  """

  init_gain: float = 0.02
  epsilon: float = 1e-5
  momentum: float = 0.1  # PyTorch's: the weight of the new batch

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
    # The counter is read only where it exists or may be written: a checkpoint written before it
    # existed still runs in eval mode.
    counted = self.has_variable("batch_stats", "num_batches_tracked") or self.is_mutable_collection("batch_stats")
    counter = self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), jnp.int32) if counted else None
    if train:
      x = x.astype(jnp.float32)
      mean = x.mean((0, 1, 2))
      var = jax.lax.square(x - mean).mean((0, 1, 2))
      if self.is_mutable_collection("batch_stats") and not self.is_initializing():
        n = x.size // c
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * (var * (n / max(n - 1, 1)))
        counter.value = counter.value + 1
    else:
      mean, var = ra_mean.value, ra_var.value
    scale = self.param("scale", batch_norm_scale_init(self.init_gain), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    y = x - mean
    mul = jax.lax.rsqrt(var + self.epsilon)
    mul *= scale
    y *= mul
    return y + bias


class Norm(nn.Module):
  """The official `get_norm_layer`: 'batch', 'instance' (no affine, no stats) or 'none'."""

  kind: str
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.kind == "batch":
      return BatchNorm(self.init_gain, name="bn")(x, train)
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
  conv_impl: str = "gemm"  # 'gemm' or 'xla' (conv.resolve_conv_impl)
  rules: conv_lib.Rules = conv_lib.RULES  # which form each layer takes under 'gemm' (`with_rules`)
  remat_blocks: bool = False  # ResNet blocks recompute their activations in the backward pass

  @property
  def use_bias(self) -> bool:
    return self.norm == "instance"  # the official bias rule

  def conv(self, features, kernel, stride, padding, bias=None, name=None):
    return Conv(features, kernel, stride, padding, use_bias=self.use_bias if bias is None else bias,
                kernel_init=kernel_init(self.init_type, self.init_gain), compute_dtype=self.compute_dtype,
                conv_impl=self.conv_impl, rules=self.rules, name=name)

  def conv_transpose(self, features, kernel, output_padding=0, bias=None, name=None):
    return ConvTranspose(
        features, kernel, 2, 1, output_padding, use_bias=self.use_bias if bias is None else bias,
        kernel_init=kernel_init(self.init_type, self.init_gain, transposed=True), compute_dtype=self.compute_dtype,
        conv_impl=self.conv_impl, rules=self.rules, name=name)

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
    # remat_blocks: each block keeps its input for the backward pass and recomputes the rest
    # (BENCHMARKS.md, "CPU memory": CycleGAN at 256x256 on the CPU, peak 4.34 -> 3.33 GiB, step +17%).
    block = nn.remat(ResnetBlock, static_argnums=(2,)) if L.remat_blocks else ResnetBlock
    for i in range(self.n_blocks):
      y = block(ngf * 4, L, self.use_dropout, name=f"block{i}")(y, train)
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
                conv_lib.resolve_conv_impl(config.get("conv_impl", "auto")),
                remat_blocks=config.get("remat_blocks", False))


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


def with_rules(module: nn.Module, rules: conv_lib.Rules) -> nn.Module:
  """The same network (same variables) computing its convolutions by `rules`:
  `conv.INFERENCE_RULES` for translating and evaluating, `conv.STUDY_RULES` for a study's step."""
  return module.clone(layers=dataclasses.replace(module.layers, rules=rules))


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
