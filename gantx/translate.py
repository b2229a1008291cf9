"""Translating images with a trained generator: from a gantx run or an official `.pth` file.

    python -m gantx translate --workdir runs/facades --input photos/ --output out/
    python -m gantx translate --pth latest_net_G.pth --input photo.jpg --output out/

Writes `out/images/<name>_real.png` and `<name>_fake.png` for every input image (the official
test.py names for a model without targets) and `out/index.html`, a table of both.

Sizes: each image gets the official test-time transform of the run's `preprocess` (test.py
sets load_size = crop_size and turns flips off): 'resize_and_crop' resizes to crop_size x
crop_size; 'scale_width' and 'none' keep the aspect ratio and round height and width to the
multiple the generator needs (`gantx.data.preprocess.load_image` documents the exact rule). Output images
have the size the generator saw.

Test-time mode: as the paper and the official default, each image runs alone with dropout on
and batch norm on its own statistics; `eval=True` (official --eval) uses the running averages
and no dropout. Results do not depend on the batch size (in eval mode up to float rounding).
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn
from tqdm import tqdm

from gantx import checkpointing, convert, evaluate, models, paths, pth, writers
from gantx.data import lab, preprocess, sources
from gantx.data.images import BadImageError, to_uint8
from gantx import config as config_lib


class Generator(NamedTuple):
  """A generator ready to run: module, variables and the config it was trained with."""
  name: str  # 'G', 'G_A', 'G_B', or the .pth path
  module: nn.Module
  variables: dict[str, Any]  # {'params': ..., 'batch_stats': ...}
  config: ml_collections.ConfigDict
  input_nc: int
  output_nc: int


def generator_name(config, direction: str) -> str:
  """The generator that translates `direction` ('AtoB' or 'BtoA') of the run's data."""
  if direction not in config_lib.DIRECTIONS:
    raise ValueError(f"direction={direction!r} is not one of {', '.join(config_lib.DIRECTIONS)}.")
  if config.model != "cycle_gan":
    if direction != "AtoB":
      raise ValueError(f"A {config.model} run has one generator, trained for its config.direction={config.direction!r}"
                       " (A is its input); only direction AtoB is available.")
    return "G"
  return "G_A" if direction == "AtoB" else "G_B"


def from_workdir(workdir: str | os.PathLike, direction: str = "AtoB", step: int | None = None,
                 replica: int | None = None) -> Generator:
  """The generator of a run (or of replica `replica` of a seed study) at checkpoint `step`
  (default the latest), read from its checkpoint."""
  config, _, state = checkpointing.load_run(workdir, step, replica)
  name = generator_name(config, direction)
  a_nc, b_nc = config.input_nc, config.output_nc
  in_nc, out_nc = (b_nc, a_nc) if name == "G_B" else (a_nc, b_nc)
  module = models.define_G(config, in_nc, out_nc)
  variables = {"params": state["params"][name], "batch_stats": state["batch_stats"].get(name, {})}
  return Generator(name, module, variables, config, in_nc, out_nc)


def from_pth(path: str | os.PathLike, config: ml_collections.ConfigDict | None = None) -> Generator:
  """An official generator `.pth` (e.g. `latest_net_G.pth` of a pretrained model).

  The architecture comes from the file's keys; `config` (default: the base config of the model
  that uses this generator) supplies what they do not say: a U-Net's dropout, the preprocessing
  and the test-time mode."""
  state_dict = pth.load(path)
  detected = convert.detect(state_dict)
  if detected["kind"] != "G":
    raise convert.ConversionError(f"{path} holds a discriminator ({detected['netD']}), not a generator.")
  module, channels = convert.network(detected, config)
  variables = convert.from_torch(state_dict, module, channels, name=str(path))
  config = convert.network_config(detected, config)
  if config.preprocess in ("resize_and_crop", "crop"):  # test time resizes to crop_size: fit the net
    config.crop_size = max(config.crop_size, models.size_multiple(config.netG))
    config.load_size = max(config.load_size, config.crop_size)
  return Generator(str(path), module, variables, config, detected["input_nc"], detected["output_nc"])


def _out_name(path: str, root: str, is_dir: bool, used: set[str]) -> str:
  """The image's path below the input folder, with '/' -> '_' (official: the file's basename)."""
  rel = posixpath.relpath(path, root) if is_dir else posixpath.basename(path)
  name = posixpath.splitext(rel)[0].replace("/", "_")
  base, i = name, 1
  while name in used:
    name, i = f"{base}_{i}", i + 1
  used.add(name)
  return name


def translate(gen: Generator, inputs: str | os.PathLike, output: str | os.PathLike, *, batch_size: int = 8,
              eval_mode: bool | None = None, seed: int | None = None, progress: bool = True,
              skip_bad_images: bool = False) -> tuple[list[dict[str, str]], dict[str, str]]:
  """Translates an image file, or every image under a folder, into `output` (see the module doc).

  Args:
    gen: the generator (`from_workdir` or `from_pth`).
    inputs: an image file or a folder (searched recursively; official extensions); local or a bucket URL.
    output: the output folder (created; local or a bucket URL); receives images/ and index.html.
    batch_size: images per forward pass (memory; results do not depend on it, up to float rounding in eval mode).
    eval_mode: None: the run's config.eval; else True/False as documented above.
    seed: the dropout key's seed (default the run's config.seed).
    skip_bad_images: leave out files that cannot be read (truncated, not an image, smaller than the
      crop) instead of stopping at the first; they are returned. Each image's dropout key depends on
      its position among all the inputs, so skipping one changes no other output.
  Returns:
    (rows, skipped): one dict per translated image (name, input: the source path, real and fake:
    paths under output), and {path: why} of the files left out.
  Raises:
    BadImageError naming the file, for the first bad file unless skip_bad_images.
  """
  config = gen.config
  inputs, output = paths.path(inputs), paths.path(output)
  paths.check_bucket(inputs, "--input")
  paths.check_bucket(output, "--output")
  if not inputs.exists():
    raise FileNotFoundError(f"Input {inputs} does not exist.")
  is_dir = inputs.is_dir()
  files = sources.single_folder(inputs) if is_dir else (os.fspath(inputs),)  # all of them: no training cap
  eval_mode = config.eval if eval_mode is None else eval_mode
  run = evaluate.make_translator(gen.module, eval_mode)
  params, stats = gen.variables["params"], gen.variables.get("batch_stats", {})
  key = jax.random.key(config.seed if seed is None else seed)
  (output / "images").mkdir(parents=True, exist_ok=True)
  used: set[str] = set()
  names = [_out_name(p, os.fspath(inputs), is_dir, used) for p in files]
  multiple = models.size_multiple(config.netG)
  # Colorization reads each photo in colour and gives G its lightness (gantx.data.lab, as the official
  # data mode); it writes that lightness as the real image and the colourised RGB as the fake one.
  colorize = config.model == "colorization"
  rows: list[dict[str, str] | None] = [None] * len(files)  # in input order, whatever the size groups
  skipped: dict[str, str] = {}
  for start in tqdm(range(0, len(files), batch_size), disable=not progress, desc="translate", unit="batch"):
    images = {}  # position in the chunk -> image
    for i, p in enumerate(files[start:start + batch_size]):
      try:
        images[i] = preprocess.load_image(p, config, 3 if colorize else gen.input_nc)
        if colorize:
          images[i] = lab.split(to_uint8(images[i]))[0]
      except BadImageError as e:
        if not skip_bad_images:
          raise BadImageError(f"{e} (--skip_bad_images leaves such files out)") from e
        skipped[p] = str(e)
        continue
      if images[i].shape[0] % multiple or images[i].shape[1] % multiple:
        raise ValueError(f"{p} becomes {images[i].shape[0]}x{images[i].shape[1]}, which netG={config.netG!r} cannot"
                         f" take (multiples of {multiple}): use --config.crop_size={multiple} or a multiple of it.")
    for shape in dict.fromkeys(im.shape for im in images.values()):  # one forward per distinct size
      idx = [i for i, im in images.items() if im.shape == shape]
      batch = jnp.asarray(np.stack([images[i] for i in idx]))
      keys = jnp.stack([jax.random.fold_in(key, start + i) for i in idx])  # per image: batching-invariant
      out = np.asarray(run(params, stats, batch, keys))
      if colorize:
        out = lab.to_rgb(np.asarray(batch), out)
      for j, i in enumerate(idx):
        name = names[start + i]
        row = {"name": name, "input": files[start + i], "real": f"images/{name}_real.png",
               "fake": f"images/{name}_fake.png"}
        writers.save_image(images[i], output / row["real"])
        writers.save_image(out[j], output / row["fake"])
        rows[start + i] = row
  done = [r for r in rows if r is not None]
  writers.html_table(output / "index.html", f"{gen.name}: {len(done)} images",
                     ["real", "fake"], [(r["name"], [r["real"], r["fake"]]) for r in done])
  return done, skipped
