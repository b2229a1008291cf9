"""The base configuration of every gantx run, and its validation.

Field names mirror the official options of junyanz/pytorch-CycleGAN-and-pix2pix so that a
user maps their flags one to one (`--lambda_L1 100` becomes `--config.lambda_L1=100`).
Experiment files in `configs/` call `base_config()` and change only what differs.

Everything that is counted in epochs by the official code (`n_epochs`, `n_epochs_decay`,
`lr_decay_iters`) is converted to optimizer steps by `steps_per_epoch`, from the size of the
training set and the global batch size.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import pathlib
import re
import runpy

import ml_collections

MODELS = ("pix2pix", "cycle_gan", "colorization")
NORMS = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")
LR_POLICIES = ("linear", "step", "cosine")
DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DATA_SOURCES = ("builtin", "folder", "tfds")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
COMPUTE_DTYPES = ("float32", "bfloat16")
CONV_IMPLS = ("auto", "xla", "gemm")


def base_config(model: str = "pix2pix") -> ml_collections.ConfigDict:
  """Returns the official base + train options with the defaults that `model` sets.

  As the official models' `modify_commandline_options`: pix2pix uses unet_256, batch norm,
  vanilla GAN, lambda_L1 100 and no pool; cycle_gan uses resnet_9blocks, instance norm,
  lsgan, a pool of 50 and no dropout; colorization is pix2pix from a photo's lightness (1 channel)
  to its colours (2 channels: Lab's a and b), as the official `colorization` model and data mode.
  """
  if model not in MODELS:
    raise ValueError(f"model={model!r} is not one of {', '.join(MODELS)}.")
  c = ml_collections.ConfigDict()
  # Which model: 'pix2pix' (paired, U-Net + PatchGAN, L1), 'cycle_gan' (unpaired, two G, two D) or
  # 'colorization' (pix2pix from the Lab lightness of any colour photo to its colours).
  c.model = model

  # --- Networks (official: --netG --netD --n_layers_D --norm --ngf --ndf --no_dropout) ---
  # Generator: 'unet_256', 'unet_128' (any 'unet_<2^k>' works), 'resnet_9blocks', 'resnet_6blocks'.
  c.netG = "unet_256"
  # Discriminator: 'basic' (70x70 PatchGAN), 'n_layers' (uses n_layers_D), 'pixel' (1x1).
  c.netD = "basic"
  c.n_layers_D = 3  # netD 'n_layers': the number of stride-2 layers of the PatchGAN
  # Normalisation: 'batch', 'instance' or 'none'. Convolutions carry a bias only with 'instance'.
  c.norm = "batch"
  c.ngf = 64  # generator filters in the first conv layer
  c.ndf = 64  # discriminator filters in the first conv layer
  c.input_nc = 3  # channels of A images: 3 (RGB) or 1 (grayscale)
  c.output_nc = 3  # channels of B images
  # Dropout(0.5) in the U-Net decoder / ResNet blocks is on unless this is True.
  c.no_dropout = False
  # Weight init: 'normal' N(0, init_gain), 'xavier', 'kaiming', 'orthogonal'.
  c.init_type = "normal"
  c.init_gain = 0.02  # std of 'normal'; gain of 'xavier' and 'orthogonal'; BatchNorm weights ~ N(1, init_gain)

  # --- Objectives ---
  # 'vanilla' (BCE on logits), 'lsgan' (MSE), 'wgangp' (with the gradient penalty), 'hinge'.
  c.gan_mode = "vanilla"
  c.lambda_L1 = 100.0  # pix2pix: weight of L1(G(A), B).
  c.lambda_A = 10.0  # cycle_gan: weight of the cycle loss A -> B -> A.
  c.lambda_B = 10.0  # cycle_gan: weight of the cycle loss B -> A -> B.
  c.lambda_identity = 0.5  # cycle_gan: identity loss weight, relative to lambda_A / lambda_B.
  c.lambda_gp = 10.0  # wgangp: weight of the gradient penalty.
  # Weight of the generators' GAN terms (not an official option; 1 as the official objective). 0 is
  # the papers' "L1 alone" / "cycle alone": no discriminator is trained or run.
  c.lambda_GAN = 1.0
  # pix2pix: D judges the pair (A, B), the official cGAN. False: D sees B alone, the pix2pix paper's
  # unconditional "GAN" ablation (not an official option).
  c.conditional_D = True
  # Size of the history pool of generated images fed to D (0: no pool, as in pix2pix).
  c.pool_size = 0

  # Arithmetic of the convolutions: 'float32', or 'bfloat16' (mixed precision: parameters, Adam
  # state, normalisation statistics and losses stay float32).
  c.compute_dtype = "float32"
  # How convolutions are computed (same numbers up to rounding): 'xla' (XLA's own convolutions:
  # cuDNN on GPUs, the MXU on TPUs), 'gemm' (matrix products where XLA:CPU's convolutions are
  # slow: Winograd for the wide 3x3 and 4x4 layers, im2col GEMMs with GEMM gradients elsewhere;
  # the CPU rules of conv.Rules), 'auto' ('gemm' on the CPU backend, else 'xla').
  c.conv_impl = "auto"
  # True: the ResNet generators' blocks keep only their input for the backward pass and recompute
  # the rest (jax.checkpoint): the same numbers, less memory, a slower step. CycleGAN at 256x256,
  # batch 1, on 2 CPU cores: peak memory 4.34 -> 3.33 GiB (the official code: 3.64), step +17%
  # (BENCHMARKS.md, "CPU memory"). For machines with 8 GB or less.
  c.remat_blocks = False

  # --- Optimisation (Adam(lr, b1=beta1, b2=0.999) for G and for D) ---
  c.lr = 2e-4
  c.beta1 = 0.5  # Adam's first-moment decay
  # Global batch size, over all devices and hosts: each of D devices gets batch_size / D images.
  c.batch_size = 1
  # If > 0, the per-device batch instead: batch_size becomes per_device_batch_size * devices
  # (resolved at start and written to config.json).
  c.per_device_batch_size = 0
  # lr constant for n_epochs, then (lr_policy 'linear') linear decay to 0 over n_epochs_decay.
  c.n_epochs = 100
  c.n_epochs_decay = 100  # epochs of decay after n_epochs
  c.lr_policy = "linear"  # 'linear', 'step' or 'cosine' (gantx/schedules.py)
  c.lr_decay_iters = 50  # lr_policy 'step': multiply by 0.1 every lr_decay_iters epochs.
  # Stop after this many optimizer steps (smoke runs, tests); -1 trains all the epochs (n_epochs +
  # n_epochs_decay). 0 is refused: it would train nothing.
  c.num_train_steps = -1
  # Seeds everything (gantx/seeds.py). Each of the three streams below, when set, replaces it for
  # that stream alone: network init; data order, crops, flips and unaligned pairing; the step's
  # dropout, pool draws and gradient-penalty interpolation (and the evaluations' dropout).
  c.seed = 0
  c.init_seed = ml_collections.config_dict.placeholder(int)  # None: seed
  c.data_seed = ml_collections.config_dict.placeholder(int)  # None: seed
  c.step_seed = ml_collections.config_dict.placeholder(int)  # None: seed

  # --- Data and preprocessing (official: --load_size --crop_size --preprocess ...) ---
  c.direction = "AtoB"  # 'AtoB' or 'BtoA': which side (or domain) is the generator's input
  c.load_size = 286  # scale images to this size (preprocess)
  c.crop_size = 256  # then crop to this size (the networks' input)
  # Rectangular crops: crop_size is then the height and crop_width the width (0: square crops).
  c.crop_width = 0
  # 'resize_and_crop' (resize to load_size^2, random crop), 'crop', 'scale_width' (width to load_size,
  # aspect kept), 'scale_width_and_crop', 'none'; 'none' and 'scale_width' round sides to the
  # generator's multiple, and every image must then give the first image's shape.
  c.preprocess = "resize_and_crop"
  c.no_flip = False  # True: no random horizontal flips
  c.serial_batches = False  # True: examples in order (unaligned: B[i mod |B|]), not shuffled
  # Cap on the number of images read per domain (the official default is inf).
  c.max_dataset_size = math.inf
  c.data = ml_collections.ConfigDict()
  # 'builtin' (generated, offline), 'folder' (the official layouts), 'tfds' (cycle_gan/* only).
  c.data.source = "builtin"
  # Data set name: a folder name under data.root, or the tfds cycle_gan config name.
  c.data.name = "shapes"
  # Directory holding data sets (folder: <root>/<name>/{train,val,test} or {trainA,...}).
  c.data.root = "./datasets"
  # Built-in data: number of generated train / test examples (per domain for unpaired).
  c.data.num_train = 400
  c.data.num_test = 32  # built-in data: test examples
  # Data loader worker processes (0: load in the main process).
  c.data.num_workers = 0
  # Before training, decode every image of a folder data set once and list all bad files (unreadable,
  # truncated, an aligned image of odd width, ...) in one error.
  c.data.check_images = True
  # Leave bad files out (their count and names are printed) instead of stopping; runs the check
  # even when check_images is False. max_dataset_size caps the file list before bad files are dropped.
  c.data.skip_bad_images = False

  # --- Loop cadence (in optimizer steps) and outputs ---
  c.log_every_steps = 50  # losses: means over these windows (metrics.jsonl, TensorBoard, the bar)
  # Held-out metrics and sample grids (samples/*.png) on the eval set.
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 2000  # and at the last step, and on SIGTERM / Ctrl-C
  c.max_checkpoints_to_keep = 3  # older checkpoints are deleted
  # Number of test pairs used for the held-out L1 and the sample grids.
  c.num_eval_images = 8
  # Path of pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth): with it, every
  # evaluation also reports FID and KID of each generator's outputs (nothing is downloaded).
  c.fid_weights = ""
  # Test-time mode (official --eval): False runs G as in the paper (dropout on, batch norm with
  # the statistics of each image); True uses the running averages and no dropout.
  c.eval = False
  # Persistent XLA compilation cache: a second run of the same shapes starts without compiling
  # ("" turns it off; $JAX_COMPILATION_CACHE_DIR, when set, takes precedence).
  c.compilation_cache_dir = "~/.cache/gantx/xla"
  # Start multi-process JAX (jax.distributed.initialize) even without a launcher's variables.
  c.distributed = False
  # Seconds a process waits for the others at start-up, before the first step and at checkpoint
  # barriers: hosts start, load and compile at different speeds (docs/pods.md, "Timeouts").
  c.peer_timeout_s = 1800.0
  # Watchdog: when no step finishes for max(this, 10 x the median step time) seconds, every process
  # writes what it waits for and its Python stacks, and exits (status 75); 0 turns it off.
  c.step_timeout_s = 600.0
  # On resume, accept a config that differs from the saved one in a field that matters.
  c.allow_config_change = False
  if model == "cycle_gan":
    c.netG, c.norm, c.gan_mode, c.pool_size, c.no_dropout = "resnet_9blocks", "instance", "lsgan", 50, True
    c.data.name = "shapes_unpaired"
  if model == "colorization":  # the official ColorizationModel: input_nc 1 (L), output_nc 2 (ab), AtoB
    c.input_nc, c.output_nc = 1, 2
  return c


def paired(config) -> bool:
  """pix2pix and colorization learn from pairs (the pix2pix step and networks); cycle_gan does not."""
  return config.model != "cycle_gan"


def dataset_config(model: str, name: str, **fields) -> ml_collections.ConfigDict:
  """`base_config(model)` reading the official folder layout `<data.root>/<name>`, with `fields`
  (top-level config fields) changed. The experiment files in configs/ are one call of this."""
  c = base_config(model)
  c.data.source = "folder"
  c.data.name = name
  for field, value in fields.items():
    if field not in c:
      raise KeyError(f"dataset_config: config has no field {field!r}.")
    c[field] = value
  return c


_UNET = re.compile(r"^unet_(\d+)$")
_RESNET = re.compile(r"^resnet_(\d+)blocks$")


def unet_num_downs(netG: str) -> int | None:
  """'unet_256' -> 8 (the image size must be a multiple of 2**num_downs); None if not a U-Net."""
  m = _UNET.match(netG)
  if not m:
    return None
  size = int(m.group(1))
  if size < 2 or size & (size - 1):
    raise ValueError(f"config.netG={netG!r}: a U-Net size must be a power of two (unet_128, unet_256).")
  return size.bit_length() - 1


def resnet_blocks(netG: str) -> int | None:
  """'resnet_9blocks' -> 9; None if not a ResNet generator."""
  m = _RESNET.match(netG)
  return int(m.group(1)) if m else None


def crop_hw(config) -> tuple[int, int]:
  """(height, width) of training crops: crop_size x crop_size, or crop_size x crop_width."""
  return config.crop_size, config.crop_width or config.crop_size


def _one_of(config, field, allowed):
  value = config[field] if "." not in field else config.data[field.split(".")[1]]
  if value not in allowed:
    raise ValueError(f"config.{field}={value!r} is not one of {', '.join(allowed)}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for any value the run cannot use."""
  _one_of(config, "model", MODELS)
  _one_of(config, "norm", NORMS)
  _one_of(config, "init_type", INIT_TYPES)
  _one_of(config, "gan_mode", GAN_MODES)
  _one_of(config, "lr_policy", LR_POLICIES)
  _one_of(config, "direction", DIRECTIONS)
  _one_of(config, "preprocess", PREPROCESS)
  _one_of(config, "netD", DISCRIMINATORS)
  _one_of(config, "data.source", DATA_SOURCES)
  _one_of(config, "compute_dtype", COMPUTE_DTYPES)
  _one_of(config, "conv_impl", CONV_IMPLS)
  if unet_num_downs(config.netG) is None and resnet_blocks(config.netG) is None:
    raise ValueError(
        f"config.netG={config.netG!r} is not a generator: use unet_256, unet_128 (unet_<2^k>),"
        " resnet_9blocks or resnet_6blocks.")
  for field in ("batch_size", "ngf", "ndf", "input_nc", "output_nc", "crop_size", "load_size"):
    if config[field] < 1:
      raise ValueError(f"config.{field}={config[field]} must be at least 1.")
  if config.crop_width < 0:
    raise ValueError(f"config.crop_width={config.crop_width} must be >= 0 (0: square crops).")
  if config.n_epochs < 0 or config.n_epochs_decay < 0:
    raise ValueError("config.n_epochs and config.n_epochs_decay must be >= 0.")
  if config.model == "colorization" and (config.input_nc, config.output_nc, config.direction) != (1, 2, "AtoB"):
    raise ValueError(f"config.model='colorization' maps the lightness (input_nc 1) to the colours (output_nc 2),"
                     f" AtoB; got input_nc={config.input_nc}, output_nc={config.output_nc},"
                     f" direction={config.direction!r}.")
  if config.model == "cycle_gan" and config.lambda_identity > 0 and config.input_nc != config.output_nc:
    raise ValueError(
        "config.lambda_identity > 0 needs input_nc == output_nc (the identity loss feeds B to G_A);"
        f" got input_nc={config.input_nc}, output_nc={config.output_nc}.")
  if config.lambda_GAN < 0:
    raise ValueError(f"config.lambda_GAN={config.lambda_GAN} must be >= 0 (0: no discriminator).")
  if config.pool_size < 0:
    raise ValueError(f"config.pool_size={config.pool_size} must be >= 0.")
  for field in ("peer_timeout_s", "step_timeout_s"):
    if config[field] < 0:
      raise ValueError(f"config.{field}={config[field]} must be >= 0 (seconds).")
  if config.num_train_steps == 0 or config.num_train_steps < -1:
    raise ValueError(f"config.num_train_steps={config.num_train_steps}: give a number of steps > 0, or -1 to train"
                     f" all the epochs (n_epochs + n_epochs_decay = {config.n_epochs + config.n_epochs_decay}).")


# ----------------------------------------------------------------------------- the command line


def _config_file(argv: list[str]) -> str | None:
  """The path given as --config FILE or --config=FILE (without a ':argument' suffix)."""
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1].split(":")[0]
    if arg.startswith("--config="):
      return arg[len("--config="):].split(":")[0]
  return None


def _overrides(argv: list[str]) -> list[tuple[str, str]]:
  """(field path, the argument as given) of every --config.<path>[=value] override."""
  out = []
  for arg in argv:
    if arg.startswith("--config."):
      out.append((arg[len("--config."):].split("=")[0], arg))
  return out


def load_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (what --config FILE loads)."""
  return runpy.run_path(path)["get_config"]()


def unknown_field(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  """Why `dotted` (e.g. 'data.nme') names no field of `config`, with the closest one; None if it does."""
  node, seen = config, []
  for name in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      where = "the config" if not seen else f"config.{'.'.join(seen)}"
      close = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
      hint = f"; did you mean {'.'.join(seen + close)!r}?" if close else f" (it has: {', '.join(keys)})."
      return f"{where} has no field {name!r}{hint}"
    node, seen = node[name], seen + [name]
  return None


def _existing_configs(path: str) -> str:
  folder = pathlib.Path(path).parent
  if not folder.is_dir():
    folder = pathlib.Path(__file__).resolve().parent.parent / "configs"
  names = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))
  return f"the configs in {folder}: {', '.join(names) or 'none'}"


def parse_flags(argv: list[str]) -> list[str]:
  """The absl flags parser of gantx's entry points (`app.run(main, flags_parser=parse_flags)`):
  absl's, with config mistakes said in one line (SystemExit) instead of a traceback: a missing
  config file (and the configs that exist), an unknown field (and the closest known one)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  prog, path = os.path.basename(argv[0]), _config_file(argv)
  if path is not None and not os.path.isfile(path):  # ml_collections would fail at the first use
    raise SystemExit(f"{prog}: error: --config {path}: no such file; {_existing_configs(path)}.")
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # what ml_collections raises for an unknown field
    for dotted, arg in _overrides(argv):
      if path is not None and (why := unknown_field(load_file(path), dotted)) is not None:
        raise SystemExit(f"{prog}: error: {arg}: {why} (`python -m gantx config {path}` lists every field).") from None
    raise SystemExit(f"{prog}: error: {e}") from None
  except flags.Error as e:
    raise SystemExit(f"{prog}: error: {e}. (`{prog} --helpfull` lists the flags.)") from None


def _field_comments() -> dict[str, tuple[str, str]]:
  """Field path -> (section, comment) from the source of `base_config`: the comment lines right
  above a field's assignment and its trailing comment; '# --- Section ---' lines head sections."""
  out, block, section = {}, [], "Model"
  for line in inspect.getsource(base_config).splitlines():
    text = line.strip()
    if text.startswith("# ---"):
      section, block = text.strip("# -"), []
    elif text.startswith("#"):
      block.append(text.lstrip("#").strip())
    elif m := re.match(r"c\.([\w.]+) = [^#]*?(?:\s+#\s*(.*))?$", text):
      if m[1] not in out:
        out[m[1]] = (section, " ".join(block + ([m[2]] if m[2] else [])))
      block = []
    else:
      block = []
  return out


def describe(config: ml_collections.ConfigDict, source: str = "") -> str:
  """Every field of `config` with its value and its comment, section by section; fields that differ
  from `base_config(config.model)` are marked '*'. What `python -m gantx config FILE` prints."""
  base, comments = base_config(config.model), _field_comments()
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update({f"{key}.{k}": v for k, v in value.items()})
    else:
      flat[key] = value
  lines = [f"# {source or 'config'} (model {config.model!r}); * differs from gantx.config.base_config({config.model!r})."
           " Override any field as --config.<field>=<value>."]
  section = None
  for key in sorted(flat, key=lambda k: list(comments).index(k) if k in comments else len(comments)):
    sec, comment = comments.get(key, ("other", ""))
    if sec != section:
      lines.append(f"\n# --- {sec}")
      section = sec
    block, _, field = key.rpartition(".")
    before = (base[block] if block else base).get(field, None)
    mark = "*" if flat[key] != before else " "
    lines.append(f"{mark} {key:<24} {flat[key]!r:<22} {comment}".rstrip())
  return "\n".join(lines)
