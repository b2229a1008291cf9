"""Official PyTorch state dicts <-> gantx variables, for every generator and discriminator.

The official networks are `nn.Sequential`s, so a state-dict key is a path of child indices
(`model.model.1.model.3.model.5.weight`); gantx modules have named submodules
(`outer/inner/inner/up_conv/kernel`). `torch_key` maps one gantx variable path to its key; the
rest is layout:

  Conv2d weight (out, in, kh, kw)           -> Conv kernel (kh, kw, in, out)
  ConvTranspose2d weight (in, out, kh, kw)  -> ConvTranspose kernel (in, kh, kw, out)
  BatchNorm2d weight, bias                  -> params  .../bn/scale, .../bn/bias
  BatchNorm2d running_mean, running_var     -> batch_stats .../bn/mean, .../bn/var

`num_batches_tracked` is batch_stats .../bn/num_batches_tracked (int32 here; a file without it, from
before torch 0.4, imports as 0); InstanceNorm
layers have no parameters, and the running statistics that pre-0.4 checkpoints carry for them
are ignored, as the official loader does. Dropout has no parameters: in a U-Net its presence
cannot be read from the keys (the official pix2pix models use it), in a ResNet it shifts the
block's second conv from index 5 to 6.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from gantx import models, pth

StateDict = Mapping[str, np.ndarray]


class ConversionError(ValueError):
  """A state dict that does not fit the network; the message names the first offending key."""


# ------------------------------------------------------------------------------ key mapping


def _unet_prefix(level: int) -> str:
  return "model.model." if level == 0 else "model.model.1." + "model.3." * (level - 1) + "model."


def _unet_index(layer: str, level: int, innermost: bool) -> int:
  """Child index of a U-Net level's layer in its Sequential (official UnetSkipConnectionBlock)."""
  if level == 0:
    return {"down_conv": 0, "up_conv": 3}[layer]
  if innermost:
    return {"down_conv": 1, "up_conv": 3, "up_norm": 4}[layer]
  return {"down_conv": 1, "down_norm": 2, "up_conv": 5, "up_norm": 6}[layer]


def _resnet_index(layer: str, n_blocks: int) -> int:
  fixed = {"conv_in": 1, "norm_in": 2, "down0_conv": 4, "down0_norm": 5, "down1_conv": 7, "down1_norm": 8}
  if layer in fixed:
    return fixed[layer]
  up = {"up0_conv": 10, "up0_norm": 11, "up1_conv": 13, "up1_norm": 14, "conv_out": 17}
  return up[layer] + n_blocks


def _block_index(layer: str, dropout: bool) -> int:
  return {"conv1": 1, "norm1": 2, "conv2": 5 + dropout, "norm2": 6 + dropout}[layer]


def _nlayer_index(layer: str) -> int:
  n = int(layer[4:])  # conv<n> / norm<n>
  return 0 if layer == "conv0" else 3 * n - 1 if layer.startswith("conv") else 3 * n


_PIXEL = {"conv0": 0, "conv1": 2, "norm1": 3, "conv2": 5}
_LEAF = {("params", "kernel"): "weight", ("params", "bias"): "bias", ("params", "scale"): "weight",
         ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var",
         ("batch_stats", "num_batches_tracked"): "num_batches_tracked"}


def torch_key(module: Any, collection: str, path: tuple[str, ...]) -> str:
  """The official state-dict key of gantx variable `collection`/`path` of `module`.

  `module` is the gantx network (its type and fields give the Sequential indices)."""
  leaf = _LEAF[(collection, path[-1])]
  path = path[:-1]
  if path[-1] == "bn":  # Norm wraps BatchNorm as submodule 'bn'
    path = path[:-1]
  if isinstance(module, models.UnetGenerator):
    level = path.count("inner")
    innermost = level == module.num_downs - 1
    return f"{_unet_prefix(level)}{_unet_index(path[-1], level, innermost)}.{leaf}"
  if isinstance(module, models.ResnetGenerator):
    if path[0].startswith("block"):
      i = 10 + int(path[0][5:])
      return f"model.{i}.conv_block.{_block_index(path[1], module.use_dropout)}.{leaf}"
    return f"model.{_resnet_index(path[0], module.n_blocks)}.{leaf}"
  if isinstance(module, models.NLayerDiscriminator):
    return f"model.{_nlayer_index(path[0])}.{leaf}"
  if isinstance(module, models.PixelDiscriminator):
    return f"net.{_PIXEL[path[0]]}.{leaf}"
  raise TypeError(f"No official key layout for {type(module).__name__}.")


def _to_torch_layout(kind: str, x: np.ndarray) -> np.ndarray:
  if kind == "conv":
    return x.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
  if kind == "conv_transpose":
    return x.transpose(0, 3, 1, 2)  # (in, kh, kw, out) -> (in, out, kh, kw)
  return x


def _from_torch_layout(kind: str, x: np.ndarray) -> np.ndarray:
  if kind == "conv":
    return x.transpose(2, 3, 1, 0)
  if kind == "conv_transpose":
    return x.transpose(0, 2, 3, 1)
  return x


def _kind(path: tuple[str, ...], leaf: str) -> str:
  if leaf != "kernel":
    return "vector"
  return "conv_transpose" if path[-2] == "up_conv" or re.fullmatch(r"up\d_conv", path[-2]) else "conv"


# --------------------------------------------------------------------------- detection


def clean(state_dict: StateDict) -> dict[str, np.ndarray]:
  """Strips a `module.` (DataParallel) or `_orig_mod.` (torch.compile) prefix and drops the
  instance-norm running statistics of old checkpoints (norm layers that have no weight)."""
  out = {}
  for key, value in state_dict.items():
    if not isinstance(value, np.ndarray):
      continue  # e.g. '_metadata'
    for prefix in ("module.", "_orig_mod."):
      key = key[len(prefix):] if key.startswith(prefix) else key
    out[key] = value
  for key in list(out):
    base, _, leaf = key.rpartition(".")
    if leaf in ("running_mean", "running_var", "num_batches_tracked") and f"{base}.weight" not in out:
      del out[key]
  return out


def _norm_of(sd: dict[str, np.ndarray], norm_keys: list[str], conv_bias_key: str) -> str:
  if any(k in sd for k in norm_keys):
    return "batch"
  return "instance" if conv_bias_key in sd else "none"


def detect(state_dict: StateDict) -> dict[str, Any]:
  """Config fields of the network a (cleaned) official state dict holds.

  Returns a dict with 'kind' ('G' or 'D') and the fields that the keys and shapes determine:
  netG/netD, n_layers_D, norm, ngf/ndf, input_nc, output_nc (G), and no_dropout for ResNets.
  Raises ConversionError if the layout is none of the official networks.
  """
  sd = clean(state_dict)
  if "model.model.0.weight" in sd:  # U-Net: count the nesting of model.3.
    level = 1
    while f"{_unet_prefix(level + 1)}1.weight" in sd:
      level += 1
    w_in, w_out = sd["model.model.0.weight"], sd["model.model.3.weight"]
    return dict(kind="G", netG=f"unet_{2 ** (level + 1)}", ngf=w_in.shape[0], input_nc=w_in.shape[1],
                output_nc=w_out.shape[1], norm=_norm_of(sd, ["model.model.1.model.2.weight"], "model.model.1.model.1.bias"))
  if "model.1.weight" in sd and sd["model.1.weight"].ndim == 4 and sd["model.1.weight"].shape[-1] == 7:
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    first = blocks[0] if blocks else 10
    dropout = sd.get(f"model.{first}.conv_block.6.weight", np.zeros(0)).ndim == 4
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("model."))
    return dict(kind="G", netG=f"resnet_{len(blocks)}blocks", ngf=sd["model.1.weight"].shape[0],
                input_nc=sd["model.1.weight"].shape[1], output_nc=sd[f"model.{last}.weight"].shape[0],
                no_dropout=not dropout, norm=_norm_of(sd, ["model.2.weight"], "model.4.bias"))
  if "model.0.weight" in sd and sd["model.0.weight"].shape[-1] == 4:
    convs = sorted(int(k.split(".")[1]) for k in sd if k.endswith(".weight") and sd[k].ndim == 4)
    n_layers = len(convs) - 2
    return dict(kind="D", netD="basic" if n_layers == 3 else "n_layers", n_layers_D=n_layers,
                ndf=sd["model.0.weight"].shape[0], input_nc=sd["model.0.weight"].shape[1],
                norm=_norm_of(sd, ["model.3.weight"], "model.2.bias"))
  if "net.0.weight" in sd:
    return dict(kind="D", netD="pixel", ndf=sd["net.0.weight"].shape[0], input_nc=sd["net.0.weight"].shape[1],
                norm=_norm_of(sd, ["net.3.weight"], "net.2.bias"))
  first = next(iter(sd), None)
  raise ConversionError(f"Not an official pix2pix/CycleGAN network: no U-Net, ResNet, PatchGAN or PixelGAN"
                        f" keys (first key: {first!r}).")


def network_config(detected: Mapping[str, Any], config=None):
  """A copy of `config` (default: the base config of the model that uses the detected net) with
  the fields a `detect` result determines; the rest (a U-Net's no_dropout, init, preprocessing)
  stays the config's."""
  from gantx import config as config_lib  # pylint: disable=g-import-not-at-top

  if config is None:
    config = config_lib.base_config("pix2pix" if detected.get("netG", "").startswith("unet") else "cycle_gan")
  c = config.copy_and_resolve_references()
  if detected["kind"] == "G" and (detected["input_nc"], detected["output_nc"]) == (1, 2):
    c.model = "colorization"  # lightness -> colours: only the official colorization model maps 1 to 2 channels
  skip = ("kind",) if detected["kind"] == "G" else ("kind", "input_nc")  # a D's input_nc is not the config's
  with c.unlocked():
    for field, value in detected.items():
      if field not in skip and field in c:
        c[field] = value
  return c


def network(detected: Mapping[str, Any], config=None) -> tuple[Any, int]:
  """(gantx module, input channels) of a `detect` result (`network_config` says what is used)."""
  c = network_config(detected, config)
  if detected["kind"] == "G":
    return models.define_G(c, detected["input_nc"], detected["output_nc"]), detected["input_nc"]
  return models.define_D(c, detected["input_nc"]), detected["input_nc"]


# --------------------------------------------------------------------------- conversion


def _example_shape(module: Any, channels: int) -> tuple[int, int, int, int]:
  size = 2 ** module.num_downs if isinstance(module, models.UnetGenerator) else 256
  return (1, size, size, channels)


def variable_shapes(module: Any, channels: int) -> dict[str, dict]:
  """{'params': ..., 'batch_stats': ...} of `module` (shapes only, via jax.eval_shape)."""
  shapes = jax.tree.map(lambda s: s.shape, models.param_shapes(module, _example_shape(module, channels)))
  return {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}


def from_torch(state_dict: StateDict, module: Any, channels: int, name: str = "") -> dict[str, Any]:
  """gantx variables {'params', 'batch_stats'} of `module` (reading `channels`-channel images)
  from an official state dict; exact (a transpose of each tensor, float32).

  Raises ConversionError naming the first key that is missing, of another shape, or left over.
  """
  sd = clean(state_dict)
  where = f" ({name})" if name else ""
  out, used = {}, set()
  for collection, tree in variable_shapes(module, channels).items():
    flat = {}
    for path, shape in traverse_util.flatten_dict(tree).items():
      key = torch_key(module, collection, path)
      if path[-1] == "num_batches_tracked":  # a count: int32 here, int64 there; absent before torch 0.4
        flat[path] = np.asarray(min(int(sd.get(key, 0)), np.iinfo(np.int32).max), np.int32)
        used.add(key)
        continue
      if key not in sd:
        raise ConversionError(f"Missing key {key!r}{where}: the file does not hold this network"
                              f" ({type(module).__name__}); detected from its keys: {_describe(sd)}.")
      value = _from_torch_layout(_kind(path, path[-1]), np.asarray(sd[key], np.float32))
      if value.shape != tuple(shape):
        raise ConversionError(f"Key {key!r}{where} has shape {sd[key].shape}, the network needs"
                              f" {tuple(_to_torch_layout(_kind(path, path[-1]), np.zeros(shape)).shape)};"
                              f" detected from the file's keys: {_describe(sd)}.")
      flat[path] = value
      used.add(key)
    out[collection] = traverse_util.unflatten_dict(flat) if flat else {}
  extra = [k for k in sd if k not in used and not k.endswith("num_batches_tracked")]
  if extra:
    raise ConversionError(f"Unexpected key {extra[0]!r}{where} (and {len(extra) - 1} more): the file holds"
                          f" another network than {type(module).__name__}; detected: {_describe(sd)}.")
  return out


def _describe(sd: dict[str, np.ndarray]) -> str:
  try:
    return ", ".join(f"{k}={v}" for k, v in detect(sd).items())
  except ConversionError:
    return "no official layout"


def to_torch(variables: Mapping[str, Any], module: Any) -> dict[str, np.ndarray]:
  """The official state dict of gantx `variables`: float32 tensors, BatchNorm num_batches_tracked
  int64 (0 where the variables have no counter: checkpoints written before gantx kept one)."""
  sd = {}
  for collection in ("params", "batch_stats"):
    for path, value in traverse_util.flatten_dict(dict(variables.get(collection, {}))).items():
      key = torch_key(module, collection, path)
      if path[-1] == "num_batches_tracked":
        sd[key] = np.asarray(value, np.int64)
        continue
      sd[key] = np.ascontiguousarray(_to_torch_layout(_kind(path, path[-1]), np.asarray(value, np.float32)))
      if collection == "batch_stats" and path[-1] == "mean":
        sd.setdefault(key.rsplit(".", 1)[0] + ".num_batches_tracked", np.zeros((), np.int64))
  return dict(sorted(sd.items(), key=lambda kv: _key_order(kv[0])))


def _key_order(key: str) -> tuple:
  """Official state-dict order: by child indices, then weight, bias, running stats."""
  parts = key.split(".")
  leaf_rank = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"].index(parts[-1])
  return tuple(int(p) if p.isdigit() else -1 for p in parts[:-1]) + (leaf_rank,)


def load_pth(path: str, module: Any, channels: int) -> dict[str, Any]:
  """`from_torch` of a `.pth` file (read without torch; see gantx.pth)."""
  return from_torch(pth.load(path), module, channels, name=str(path))


def save_pth(variables: Mapping[str, Any], module: Any, path: str) -> None:
  """Writes `to_torch(variables, module)` as a `.pth` file that the official code loads."""
  pth.save(to_torch(variables, module), path)


# ------------------------------------------------------------------------ work directories


def _check_fits(config, name: str, detected: Mapping[str, Any], path: str) -> None:
  """ValueError naming the config field that disagrees with what the file holds."""
  from gantx import state as state_lib  # pylint: disable=g-import-not-at-top

  expected_kind = name[0]
  if detected["kind"] != expected_kind:
    raise ConversionError(f"{path} holds a {'generator' if detected['kind'] == 'G' else 'discriminator'},"
                          f" but {name} is a {'generator' if expected_kind == 'G' else 'discriminator'}.")
  wanted = dict(detected)
  wanted.pop("kind")
  channels = wanted.pop("input_nc")
  out_nc = wanted.pop("output_nc", None)
  if channels != state_lib.input_channels(config, name):
    raise ConversionError(f"{path} reads {channels}-channel images; {name} of this config reads"
                          f" {state_lib.input_channels(config, name)} (config.input_nc / output_nc).")
  if out_nc is not None and out_nc != (config.input_nc if name == "G_B" else config.output_nc):
    raise ConversionError(f"{path} writes {out_nc}-channel images; {name} of this config writes another count.")
  if wanted.get("n_layers_D") == 3 and config.netD in ("basic", "n_layers") and config.n_layers_D == 3:
    wanted["netD"] = config.netD  # 'basic' is 'n_layers' with 3 layers
  for field, value in wanted.items():
    if field == "n_layers_D" and config.netD == "basic" and value == 3:
      continue
    if config[field] != value:
      raise ConversionError(f"{path} holds {name} with {field}={value!r}, but config.{field}={config[field]!r}:"
                            f" use --config.{field}={value}.")


def import_run(config, workdir: str, files: Mapping[str, str]) -> None:
  """Makes `workdir` a gantx run at step 0 whose networks `files` (net name -> official .pth,
  e.g. {'G': 'latest_net_G.pth', 'D': 'latest_net_D.pth'}) come from PyTorch; the other networks
  are initialised as usual and Adam starts fresh. train.py, translate and evaluate then use it
  like any run (training from it fine-tunes; its data stream starts at the beginning)."""
  from gantx import checkpointing, config as config_lib, data, parallel, paths, seeds, state as state_lib  # pylint: disable=g-import-not-at-top

  config = config.copy_and_resolve_references()
  config_lib.validate(config)
  parallel.resolve_batch_size(config, parallel.make_mesh())  # as train.py does before its resume check
  nets = state_lib.build_networks(config, 1)
  unknown = sorted(set(files) - set(nets.modules))
  if unknown:
    raise ValueError(f"{config.model} has networks {', '.join(nets.modules)}; not {', '.join(unknown)}.")
  workdir = paths.check_workdir(workdir)
  if (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir()):
    raise FileExistsError(f"{workdir} already holds checkpoints; import into a new work directory.")
  # Only CycleGAN's pools depend on the image size, and only 'none'/'scale_width' take it from the
  # data; otherwise the data set need not be there.
  data_sized = config.model == "cycle_gan" and config.preprocess in ("none", "scale_width")
  hw = data.train_image_hw(config) if data_sized else config_lib.crop_hw(config)
  key, run_key = seeds.state_keys(seeds.from_config(config))
  state = state_lib.init_state(config, nets, key, hw, run_key=run_key)
  params, stats = dict(state.params), dict(state.batch_stats)
  for name, path in files.items():
    state_dict = pth.load(path)
    _check_fits(config, name, detect(state_dict), str(path))
    variables = from_torch(state_dict, nets.modules[name], state_lib.input_channels(config, name), name=str(path))
    params[name], stats[name] = variables["params"], variables["batch_stats"]
  state = state.replace(params=params, batch_stats=stats)  # Adam's moments stay zero: fresh
  workdir.mkdir(parents=True, exist_ok=True)
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", config.max_checkpoints_to_keep)
  try:
    ckpt.save(0, state, (), config)
  finally:
    ckpt.close()
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def export_run(workdir: str, output: str, step: int | None = None, prefix: str = "latest",
               replica: int | None = None) -> list[str]:
  """Writes every network of a run (or of replica `replica` of a seed study) as
  `<output>/<prefix>_net_<name>.pth` (the official file names, loadable by the official code's
  --epoch <prefix>). Returns the paths."""
  from gantx import checkpointing, paths, state as state_lib  # pylint: disable=g-import-not-at-top

  config, _, state = checkpointing.load_run(workdir, step, replica)
  paths.check_bucket(output, "--output")
  folder = paths.path(output)
  folder.mkdir(parents=True, exist_ok=True)
  written = []
  for name, module in state_lib.build_networks(config, 1).modules.items():
    path = f"{os.fspath(output).rstrip('/')}/{prefix}_net_{name}.pth"
    save_pth({"params": state["params"][name], "batch_stats": state["batch_stats"].get(name, {})}, module, path)
    written.append(path)
  return written
