"""The FID Inception-v3 of pytorch-fid as a `flax.linen` module, up to its pool3 features.

This is the network behind every FID number computed with pytorch-fid (`fid_inception_v3()`,
weights `pt_inception-2015-12-05-6726825d.pth`, a port of the TensorFlow graph of the
original FID code). It is torchvision's Inception-v3 with four differences, all kept here:
  - the Mixed_5b-5d (A), 6b-6e (C) and 7b (E_1) blocks average-pool their pool branch
    without counting the zero padding (TensorFlow's `avg_pool` 'SAME'),
  - Mixed_7c (E_2) max-pools its pool branch instead of average-pooling,
  - the classifier has 1008 classes (not needed for pool3 and not built here),
  - there is no auxiliary classifier.
Every conv is torchvision's `BasicConv2d`: conv without bias, batch norm (eps 0.001, running
statistics: the network only ever runs in eval mode) and ReLU. Images are NHWC.

Submodules carry the PyTorch attribute names (`Mixed_5b`, `branch5x5_1`, `conv`, `bn`), so
`params_from_state_dict` maps each state-dict key onto one leaf. Nothing is ever downloaded:
`load_pt_inception` reads a weight file the user already has.
"""

from __future__ import annotations

import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
FEATURES = 2048  # pool3: the final average pool, what FID and KID compare
MIN_SIZE = 75  # smallest input height/width the strided convs and pools accept

# Keys of pytorch-fid's state dict that pool3 does not use: the 1008-way classifier, and the
# batch-norm step counters that newer PyTorch versions add.
_IGNORED_PREFIXES = ("fc.",)
_IGNORED_SUFFIXES = (".num_batches_tracked",)

# FID compares feature statistics, so the convs run in full float32: on GPUs the default
# precision may use TF32 (10-bit mantissa), which moves FID visibly. No cost on CPU.
_PRECISION = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- layers


class BasicConv(nn.Module):
  """torchvision's `BasicConv2d` in eval mode: conv (no bias) -> batch norm (eps 1e-3) -> ReLU.

  `kernel` and `padding` are (height, width), like PyTorch's `kernel_size` and `padding`.
  """

  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, self.strides, padding=((ph, ph), (pw, pw)), use_bias=False,
                precision=_PRECISION, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _conv(features: int, kernel: int | tuple[int, int], name: str, strides: int = 1,
          padding: int | tuple[int, int] = 0) -> BasicConv:
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv(features, kernel, strides, padding, name=name)


def _avg_pool_same(x: Array) -> Array:
  """3x3 stride-1 average over the valid pixels only (PyTorch `count_include_pad=False`)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))  # pads with -inf


def _max_pool_down(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), (2, 2))  # VALID, floor: PyTorch's MaxPool2d(3, stride=2)


# ----------------------------------------------------------------------------- blocks


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d: (N, H, W, C) -> (N, H, W, 224 + pool_features)."""

  pool_features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = _conv(64, 1, "branch1x1")(x)
    b5 = _conv(64, 5, "branch5x5_2", padding=2)(_conv(48, 1, "branch5x5_1")(x))
    b3 = _conv(64, 1, "branch3x3dbl_1")(x)
    b3 = _conv(96, 3, "branch3x3dbl_2", padding=1)(b3)
    b3 = _conv(96, 3, "branch3x3dbl_3", padding=1)(b3)
    bp = _conv(self.pool_features, 1, "branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a, the 35 -> 17 reduction: (N, H, W, 288) -> (N, (H-3)//2+1, (W-3)//2+1, 768)."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = _conv(384, 3, "branch3x3", strides=2)(x)
    bd = _conv(64, 1, "branch3x3dbl_1")(x)
    bd = _conv(96, 3, "branch3x3dbl_2", padding=1)(bd)
    bd = _conv(96, 3, "branch3x3dbl_3", strides=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b-6e, factorised 7x7 convs: (N, H, W, 768) -> (N, H, W, 768)."""

  channels_7x7: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c7 = self.channels_7x7
    b1 = _conv(192, 1, "branch1x1")(x)
    b7 = _conv(c7, 1, "branch7x7_1")(x)
    b7 = _conv(c7, (1, 7), "branch7x7_2", padding=(0, 3))(b7)
    b7 = _conv(192, (7, 1), "branch7x7_3", padding=(3, 0))(b7)
    bd = _conv(c7, 1, "branch7x7dbl_1")(x)
    bd = _conv(c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd)
    bd = _conv(c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd)
    bd = _conv(c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd)
    bd = _conv(192, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd)
    bp = _conv(192, 1, "branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a, the 17 -> 8 reduction: (N, H, W, 768) -> (N, (H-3)//2+1, (W-3)//2+1, 1280)."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = _conv(320, 3, "branch3x3_2", strides=2)(_conv(192, 1, "branch3x3_1")(x))
    b7 = _conv(192, 1, "branch7x7x3_1")(x)
    b7 = _conv(192, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7)
    b7 = _conv(192, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7)
    b7 = _conv(192, 3, "branch7x7x3_4", strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (`pool='avg'`, FIDInceptionE_1) and Mixed_7c (`pool='max'`, FIDInceptionE_2):
  (N, H, W, C) -> (N, H, W, 2048)."""

  pool: str

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = _conv(320, 1, "branch1x1")(x)
    b3 = _conv(384, 1, "branch3x3_1")(x)
    b3 = jnp.concatenate([_conv(384, (1, 3), "branch3x3_2a", padding=(0, 1))(b3),
                          _conv(384, (3, 1), "branch3x3_2b", padding=(1, 0))(b3)], axis=-1)
    bd = _conv(448, 1, "branch3x3dbl_1")(x)
    bd = _conv(384, 3, "branch3x3dbl_2", padding=1)(bd)
    bd = jnp.concatenate([_conv(384, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd),
                          _conv(384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd)], axis=-1)
    pooled = _max_pool_same(x) if self.pool == "max" else _avg_pool_same(x)
    bp = _conv(192, 1, "branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's `fid_inception_v3()` up to pool3.

  Input (N, H, W, 3) in [-1, 1] (pytorch-fid's `normalize_input` already applied; at its
  usual 299x299, H and W at least `MIN_SIZE`). Output (N, 2048): the mean of Mixed_7c over
  space (`AdaptiveAvgPool2d(1)`). Spatial sizes for a 299x299 input are in the comments.
  """

  @nn.compact
  def __call__(self, x: Array) -> Array:
    _, h, w, _ = x.shape
    if min(h, w) < MIN_SIZE:
      raise ValueError(f"FIDInceptionV3: input {h}x{w} is smaller than {MIN_SIZE}x{MIN_SIZE}.")
    x = _conv(32, 3, "Conv2d_1a_3x3", strides=2)(x)  # 149
    x = _conv(32, 3, "Conv2d_2a_3x3")(x)  # 147
    x = _conv(64, 3, "Conv2d_2b_3x3", padding=1)(x)
    x = _max_pool_down(x)  # 73
    x = _conv(80, 1, "Conv2d_3b_1x1")(x)
    x = _conv(192, 3, "Conv2d_4a_3x3")(x)  # 71
    x = _max_pool_down(x)  # 35
    x = InceptionA(32, name="Mixed_5b")(x)  # 256 channels
    x = InceptionA(64, name="Mixed_5c")(x)  # 288
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)  # 17, 768
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)  # 8, 1280
    x = InceptionE("avg", name="Mixed_7b")(x)  # 2048
    x = InceptionE("max", name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))  # (N, 2048)


# ----------------------------------------------------------------------------- weights


@functools.cache
def _variable_shapes() -> dict:
  """{'params': ..., 'batch_stats': ...} of ShapeDtypeStructs, by tracing init (no compile)."""
  x = jax.ShapeDtypeStruct((1, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), x)


def _torch_leaves() -> list[tuple[str, tuple[str, ...], tuple[int, ...]]]:
  """(state-dict key, path in the variables dict, PyTorch shape) for every array pool3 uses,
  sorted by layer name."""
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(_variable_shapes()["params"])[0]:
    *layer, name = (k.key for k in path)  # e.g. ['Mixed_5b', 'branch1x1', 'conv'], 'kernel'
    prefix = ".".join(layer) + "."
    if name == "kernel":  # (kh, kw, in, out) -> (out, in, kh, kw)
      kh, kw, cin, cout = leaf.shape
      leaves.append((prefix + "weight", ("params", *layer, name), (cout, cin, kh, kw)))
    elif name == "scale":  # a batch norm: its running statistics follow its weight
      leaves.append((prefix + "weight", ("params", *layer, name), leaf.shape))
      leaves.append((prefix + "running_mean", ("batch_stats", *layer, "mean"), leaf.shape))
      leaves.append((prefix + "running_var", ("batch_stats", *layer, "var"), leaf.shape))
    else:  # the batch norm's bias
      leaves.append((prefix + name, ("params", *layer, name), leaf.shape))
  return leaves


def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
  """PyTorch key -> PyTorch shape of every state-dict entry pool3 needs (470 entries: 94 convs,
  each with its batch norm's weight, bias, running_mean and running_var)."""
  return {key: shape for key, _, shape in _torch_leaves()}


def _ignored(key: str) -> bool:
  return key.startswith(_IGNORED_PREFIXES) or key.endswith(_IGNORED_SUFFIXES)


def params_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Converts pytorch-fid's FID Inception state dict to `FIDInceptionV3` variables.

  Conv weights go from PyTorch's (out, in, kh, kw) to Flax's (kh, kw, in, out); batch-norm
  weight/bias/running_mean/running_var become params scale/bias and batch_stats mean/var.
  `fc.*` (the classifier) and `*.num_batches_tracked` are ignored.

  Args:
    state_dict: key -> array, e.g. from `gantx.pth.load`, keys as in pytorch-fid
      (`Mixed_5b.branch1x1.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, ...).

  Returns:
    {'params': ..., 'batch_stats': ...} of float32 numpy arrays, for `FIDInceptionV3().apply`.

  Raises:
    ValueError: naming the first missing key or wrong shape (layers in sorted order), or
      listing keys the network does not have (e.g. torchvision's `AuxLogits.*`: torchvision's
      own Inception weights are a different network and give different FIDs).
  """
  variables = {"params": {}, "batch_stats": {}}
  for key, path, shape in _torch_leaves():
    if key not in state_dict:
      raise ValueError(f"FID Inception state dict: missing key {key!r} (expected shape {shape}).")
    value = np.asarray(state_dict[key], dtype=np.float32)
    if value.shape != shape:
      raise ValueError(f"FID Inception state dict: {key!r} has shape {value.shape}, expected {shape}.")
    if len(shape) == 4:
      value = value.transpose(2, 3, 1, 0)
    node = variables
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  unexpected = sorted(set(state_dict) - set(expected_state_dict_shapes()) - {k for k in state_dict if _ignored(k)})
  if unexpected:
    raise ValueError(f"FID Inception state dict: {len(unexpected)} unexpected keys, e.g. {unexpected[:3]}; "
                     "is this pytorch-fid's pt_inception file?")
  return variables


def default_weights_path() -> str:
  """Where pytorch-fid leaves the weights: `<torch hub dir>/checkpoints/pt_inception-....pth`,
  the hub dir being $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub
  (as `torch.hub.get_dir()`)."""
  torch_home = os.environ.get("TORCH_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
  return os.path.join(os.path.expanduser(torch_home), "hub", "checkpoints", WEIGHTS_FILE)


def load_pt_inception(path: str | os.PathLike | None = None) -> dict:
  """Reads pytorch-fid's FID Inception weights into `FIDInceptionV3` variables.

  Args:
    path: the `.pth` file; None reads `default_weights_path()`, where pytorch-fid caches it.

  Returns:
    The variables of `params_from_state_dict`.

  Raises:
    FileNotFoundError: when the file is missing; the message says where to get it. gantx never
      downloads it.
  """
  path = os.fspath(default_weights_path() if path is None else path)
  from gantx import paths  # pylint: disable=g-import-not-at-top
  if not paths.path(path).is_file():
    raise FileNotFoundError(
        f"FID Inception weights not found at {path}. These are pytorch-fid's Inception-v3 weights "
        f"({WEIGHTS_FILE}, ~92 MB); gantx does not download anything. If you have used pytorch-fid, "
        f"the file is at {default_weights_path()}. Otherwise fetch it yourself from {WEIGHTS_URL} "
        "and pass its path.")
  from gantx import pth  # the torch-free .pth reader
  return params_from_state_dict(pth.load(path))


def random_inception_variables(seed: int = 0) -> dict:
  """Random `FIDInceptionV3` variables for tests (nothing is downloaded).

  Conv kernels are He-normal (std sqrt(2 / fan_in)) and batch norms are identities, so
  activations keep their scale through the 94 convs and pool3 features are O(1). Built with
  numpy from the traced shapes: no compile.
  """
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    if path[-1].key == "kernel":
      kh, kw, cin, _ = s.shape
      return (rng.standard_normal(s.shape) * np.sqrt(2.0 / (kh * kw * cin))).astype(np.float32)
    return (np.ones if path[-1].key in ("scale", "var") else np.zeros)(s.shape, np.float32)

  return jax.tree_util.tree_map_with_path(leaf, _variable_shapes())
