"""Input pipelines: built-in generated data, the official folder layouts, and tfds cycle_gan/*.

The training loop calls three functions:

  train_size(config)            examples per epoch (after max_dataset_size)
  make_train_iterator(config)   an endless grain iterator of host-local batches dict(A, B)
  make_eval_set(config)         the first num_eval_images test examples, as numpy arrays

A is always the generator input: `config.direction == 'BtoA'` swaps the two sides (paired data)
or the two domains (unpaired data), as the official models do in `set_input`.

Sources (`config.data.source`):
  'builtin'  label maps and their renderings, generated from config.seed (offline, any size).
             `render(label_map)` is the exact label -> photo mapping.
  'folder'   `<data.root>/<data.name>/`: train/ val/ test/ of A|B images (pix2pix, 'aligned'), or
             trainA/ trainB/ testA/ testB/ (cycle_gan, 'unaligned').
  'tfds'     tfds `cycle_gan/<data.name>` splits trainA/trainB/testA/testB (unpaired data only).

Determinism and multi-host: the examples form one global stream, shuffled per epoch with a seed
derived from config.seed. Each example's random crop, flip and (unaligned) B index come from an RNG
keyed by config.seed and the example's position in that stream, never by the process. Global batch
k is stream positions [k*B, (k+1)*B); process p loads only rows [p*b, (p+1)*b) of it, where
b = B / process_count, which is the layout `jax.make_array_from_process_local_data` expects on a
1-D data mesh. The iterator's get_state()/set_state() resume it exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
from typing import Any, NamedTuple, Protocol

import grain
import numpy as np
from PIL import Image

from gantx.download import IMG_EXTENSIONS, download_command, list_images

Batch = dict[str, np.ndarray]

SUPPORTED_PREPROCESS = ("resize_and_crop", "crop", "none")
# Purposes mixed with config.seed into independent seeds.
_SHUFFLE, _AUGMENT = 1, 2
# Built-in data: which split and which stream of label maps.
_TRAIN, _TEST = 0, 1
_PAIRS, _DOMAIN_A, _DOMAIN_B = 0, 1, 2


class BadImageError(ValueError):
  """An image file that cannot be decoded, or an aligned file that is not an A|B pair."""


# ---------------------------------------------------------------------------------------------
# Built-in data: facade-like label maps and a known, local rendering of them.
# ---------------------------------------------------------------------------------------------

CLASS_NAMES = ("wall", "cornice", "window", "door", "ornament", "balcony")
# Flat colours of the label maps (the A images), one per class.
LABEL_PALETTE = np.array(
    [[0, 0, 170], [255, 85, 0], [0, 85, 255], [170, 0, 0], [255, 255, 0], [0, 255, 255]], np.uint8)
# Rendering: base colour, ring amplitude and ring period (pixels at 64 px; 0: flat) per class.
# Each base colour keeps its label colour's hue, desaturated: as in real unpaired tasks
# (horse -> zebra keeps the background), the true mapping is the one that changes colour least,
# which is what CycleGAN's identity loss prefers; the rest (rings, shading) must be learned.
_RENDER_COLOUR = np.array(
    [[60, 60, 150], [210, 120, 60], [70, 120, 210], [150, 50, 40], [220, 210, 90], [70, 200, 200]],
    np.float32)
_RING_AMPLITUDE = np.array([0.0, 0.25, 0.35, 0.3, 0.3, 0.0], np.float32)
_RING_PERIOD = np.array([1.0, 3.0, 4.0, 6.0, 3.0, 1.0], np.float32)
# Brightness from the region border inwards: pixels at distance 0, 1 (x scale) are darkened, and
# the wall brightens slowly up to _MAX_DISTANCE, like ambient occlusion.
_BORDER_SHADE = (0.45, 0.75)
_WALL_GLOW = 0.15
_MAX_DISTANCE = 8  # at 64 px


def _scale(size: int) -> float:
  """Built-in geometry is designed at 64 px and scales with the image side."""
  return max(size / 64.0, 0.25)


def label_map(rng: np.random.Generator, size: int) -> np.ndarray:
  """Draws a facade-like class map: bands, windows, a door, ornaments and balconies on a wall.

  Args:
    rng: the generator of this example (all randomness comes from it).
    size: the side of the square map.
  Returns:
    (size, size) uint8 class ids in [0, len(CLASS_NAMES)).
  """
  lab = np.zeros((size, size), np.uint8)
  yy, xx = np.ogrid[:size, :size]

  def extent(lo: float, hi: float) -> int:
    return int(rng.integers(max(1, round(lo * size)), max(2, round(hi * size)) + 1))

  for _ in range(rng.integers(1, 3)):  # cornices: full-width bands
    y, h = int(rng.integers(0, size)), extent(0.06, 0.12)
    lab[y:y + h] = 1
  for _ in range(rng.integers(2, 6)):  # windows
    h, w = extent(0.12, 0.3), extent(0.1, 0.25)
    y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    lab[y:y + h, x:x + w] = 2
  if rng.random() < 0.7:  # a door standing on the bottom edge
    h, w = extent(0.25, 0.4), extent(0.15, 0.25)
    x = int(rng.integers(0, size - w + 1))
    lab[size - h:, x:x + w] = 3
  for _ in range(rng.integers(1, 4)):  # ornaments: ellipses
    ry, rx = extent(0.05, 0.12), extent(0.05, 0.15)
    cy, cx = rng.integers(0, size, size=2)
    lab[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = 4
  for _ in range(rng.integers(0, 3)):  # balconies: thin wide rectangles
    h, w = extent(0.04, 0.07), extent(0.25, 0.5)
    y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    lab[y:y + h, x:x + w] = 5
  return lab


def _erode(mask: np.ndarray) -> np.ndarray:
  """3x3 binary erosion; outside the image counts as the nearest edge pixel."""
  p = np.pad(mask, 1, mode="edge")
  rows = p[:, :-2] & p[:, 1:-1] & p[:, 2:]
  return rows[:-2] & rows[1:-1] & rows[2:]


def border_distance(labels: np.ndarray, limit: int) -> np.ndarray:
  """Chessboard distance (in pixels, capped at `limit`) from each pixel to its region's border.

  Pixels with a differently labelled 8-neighbour have distance 0. The image edge is not a border,
  so the distance, like the rendering, is local, translation- and flip-equivariant.

  Args:
    labels: (H, W) integer class ids.
  Returns:
    (H, W) int32 distances in [0, limit].
  """
  h, w = labels.shape
  p = np.pad(labels, 1, mode="edge")
  interior = np.ones((h, w), bool)
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      if (dy, dx) != (1, 1):
        interior &= p[dy:dy + h, dx:dx + w] == labels
  distance = np.zeros((h, w), np.int32)
  for _ in range(limit):
    if not interior.any():
      break
    distance += interior
    interior = _erode(interior)
  return distance


def labels_from_palette(image: np.ndarray) -> np.ndarray:
  """(H, W, 3) uint8 label-map colours -> (H, W) class ids (the nearest LABEL_PALETTE colour)."""
  image = np.asarray(image, np.uint8)
  key = (image[..., 0].astype(np.int32) << 16) | (image[..., 1].astype(np.int32) << 8) | image[..., 2]
  palette = LABEL_PALETTE.astype(np.int32)
  palette_key = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
  order = np.argsort(palette_key)
  pos = np.minimum(np.searchsorted(palette_key[order], key), len(order) - 1)
  labels = order[pos]
  inexact = palette_key[labels] != key
  if inexact.any():  # e.g. a resized label map: the nearest colour
    diff = image[inexact][:, None, :].astype(np.int32) - palette[None]
    labels[inexact] = np.argmin((diff * diff).sum(-1), axis=-1)
  return labels.astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _render_table(size: int) -> tuple[np.ndarray, int]:
  """Colour of every (class, border distance in pixels) at image side `size`: (classes, limit+1, 3)."""
  scale = _scale(size)
  limit = max(1, round(_MAX_DISTANCE * scale))
  d = np.arange(limit + 1, dtype=np.float32)[None, :] / scale  # in 64-px units
  labels = np.arange(len(CLASS_NAMES))[:, None]
  rings = 1.0 + _RING_AMPLITUDE[labels] * np.cos(2.0 * np.pi * d / _RING_PERIOD[labels])
  shade = np.where(d < 1.0, _BORDER_SHADE[0], np.where(d < 2.0, _BORDER_SHADE[1], 1.0))
  glow = np.where(labels == 0, 1.0 - _WALL_GLOW + _WALL_GLOW * d / _MAX_DISTANCE, 1.0)
  table = _RENDER_COLOUR[labels] * (rings * shade * glow)[..., None]
  return np.clip(np.rint(table), 0, 255).astype(np.uint8), limit


def render(label_map: np.ndarray) -> np.ndarray:
  """The built-in 'photo' of a label map: the exact, mostly local mapping the models must learn.

  Each class gets its own colour; windows, doors, cornices and ornaments carry concentric rings
  that follow the region's outline (a class-specific period), region borders are darkened, and the
  wall brightens away from the other regions. A pixel's colour depends only on its class and its
  distance to the region border, capped at _MAX_DISTANCE pixels (at 64 px; the geometry scales with
  the image side), so a small U-Net can learn it, and it commutes with horizontal flips and (away
  from the edges) with crops. Render whole generated maps: the scale is read from the image height.

  Args:
    label_map: (H, W) integer class ids, or (H, W, 3) uint8 colours of LABEL_PALETTE (an A image).
  Returns:
    (H, W, 3) uint8 rendering.
  """
  label_map = np.asarray(label_map)
  if label_map.ndim == 3 and label_map.shape[-1] == 3:
    labels = labels_from_palette(label_map)
  elif label_map.ndim == 2:
    labels = label_map.astype(np.intp)
  else:
    raise ValueError(f"render expects (H, W) class ids or (H, W, 3) label colours, got {label_map.shape}.")
  table, limit = _render_table(labels.shape[0])
  d = border_distance(labels, limit)
  return table.reshape(-1, 3)[labels.astype(np.intp) * (limit + 1) + d]


def _example_rng(seed: int, split: int, stream: int, index: int) -> np.random.Generator:
  return np.random.default_rng([seed % 2**32, split, stream, index])


@dataclasses.dataclass(frozen=True)
class BuiltinPairs:
  """Paired built-in examples: (label colours, render(labels)), each drawn from its own seed."""
  seed: int
  split: int
  size: int
  length: int

  def __len__(self) -> int:
    return self.length

  def pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    labels = label_map(_example_rng(self.seed, self.split, _PAIRS, index), self.size)
    return Image.fromarray(LABEL_PALETTE[labels]), Image.fromarray(render(labels))


@dataclasses.dataclass(frozen=True)
class BuiltinUnpaired:
  """Unpaired built-in domains: label maps (A) and renderings of other label maps (B)."""
  seed: int
  split: int
  size: int
  len_a: int
  len_b: int

  def image_a(self, index: int) -> Image.Image:
    labels = label_map(_example_rng(self.seed, self.split, _DOMAIN_A, index), self.size)
    return Image.fromarray(LABEL_PALETTE[labels])

  def image_b(self, index: int) -> Image.Image:
    labels = label_map(_example_rng(self.seed, self.split, _DOMAIN_B, index), self.size)
    return Image.fromarray(render(labels))


# ---------------------------------------------------------------------------------------------
# Folder and tfds sources.
# ---------------------------------------------------------------------------------------------


def open_rgb(path: os.PathLike | str) -> Image.Image:
  """Decodes an image file as RGB; BadImageError naming the file if it cannot be read."""
  try:
    with Image.open(path) as image:
      return image.convert("RGB")
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise BadImageError(f"Cannot decode image file {path}: {e}") from e


def split_aligned(image: Image.Image, path: os.PathLike | str) -> tuple[Image.Image, Image.Image]:
  """Splits an A|B image at int(w / 2) into its left (A) and right (B) halves."""
  w, h = image.size
  if w % 2 or w < 2 or w < h:
    raise BadImageError(
        f"{path} is {w}x{h}: an aligned (pix2pix) image must be A|B side by side, with an even width"
        " of at least its height (combine A and B with datasets/combine_A_and_B.py of upstream).")
  half = w // 2
  return image.crop((0, 0, half, h)), image.crop((half, 0, w, h))


@dataclasses.dataclass(frozen=True)
class AlignedFolder:
  """The official 'aligned' mode: every image under `folder` is an A|B pair."""
  folder: pathlib.Path
  paths: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)

  def pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    path = self.paths[index]
    return split_aligned(open_rgb(path), path)


@dataclasses.dataclass(frozen=True)
class UnalignedFolders:
  """The official 'unaligned' mode: two unrelated image folders (e.g. trainA/, trainB/)."""
  paths_a: tuple[str, ...]
  paths_b: tuple[str, ...]

  @property
  def len_a(self) -> int:
    return len(self.paths_a)

  @property
  def len_b(self) -> int:
    return len(self.paths_b)

  def image_a(self, index: int) -> Image.Image:
    return open_rgb(self.paths_a[index])

  def image_b(self, index: int) -> Image.Image:
    return open_rgb(self.paths_b[index])


@dataclasses.dataclass(frozen=True)
class TfdsUnpaired:
  """tfds cycle_gan/<name>: two random-access sources (their 'image' feature, uint8 HxWx3)."""
  source_a: Any
  source_b: Any
  len_a: int
  len_b: int

  def image_a(self, index: int) -> Image.Image:
    return Image.fromarray(np.asarray(self.source_a[index]["image"])).convert("RGB")

  def image_b(self, index: int) -> Image.Image:
    return Image.fromarray(np.asarray(self.source_b[index]["image"])).convert("RGB")


class PairedSource(Protocol):
  def __len__(self) -> int: ...
  def pair(self, index: int) -> tuple[Image.Image, Image.Image]: ...


class UnpairedSource(Protocol):
  len_a: int
  len_b: int
  def image_a(self, index: int) -> Image.Image: ...
  def image_b(self, index: int) -> Image.Image: ...


def _cap(config) -> int | None:
  """config.max_dataset_size as a count, None when unlimited (the official default inf)."""
  cap = config.max_dataset_size
  if cap is None or (isinstance(cap, float) and math.isinf(cap)):
    return None
  if cap < 1:
    raise ValueError(f"config.max_dataset_size={cap} must be at least 1.")
  return int(cap)


def _is_paired(config) -> bool:
  return config.model != "cycle_gan"


def _dataset_dir(config) -> pathlib.Path:
  """`<data.root>/<data.name>`; FileNotFoundError with the download command if it is missing."""
  root, name = config.data.root, config.data.name
  path = pathlib.Path(root) / name
  if not path.is_dir():
    kind = "pix2pix" if _is_paired(config) else "cyclegan"
    raise FileNotFoundError(
        f"Data set folder {path} ({path.resolve()}) does not exist (config.data.root={root!r},"
        f" config.data.name={name!r})."
        f" Get it with: {download_command(name, root, kind)}")
  return path


def _images_in(folder: pathlib.Path, cap: int | None, hint: str = "") -> tuple[str, ...]:
  """Sorted image paths under `folder`, capped; FileNotFoundError naming the folder if none."""
  if not folder.is_dir():
    present = sorted(p.name for p in folder.parent.iterdir())
    raise FileNotFoundError(f"Folder {folder} not found ({folder.parent} holds: {present or 'nothing'}).{hint}")
  paths = [str(p) for p in list_images(folder)]
  if not paths:
    raise FileNotFoundError(f"No images ({', '.join(IMG_EXTENSIONS)}) in folder {folder}.{hint}")
  return tuple(paths[:cap])


def _aligned_folder(config, phase: str) -> AlignedFolder:
  base = _dataset_dir(config)
  folder = base / phase
  if phase == "test" and not folder.is_dir() and (base / "val").is_dir():
    folder = base / "val"  # e.g. facades ships val/; the cityscapes script writes test/
  hint = ""
  if (base / "trainA").is_dir():
    hint = " This looks like an unaligned data set: use config.model='cycle_gan'."
  elif phase == "test":
    hint = " The eval set reads test/, else val/."
  return AlignedFolder(folder, _images_in(folder, _cap(config), hint))


def _unaligned_folders(config, phase: str) -> UnalignedFolders:
  base = _dataset_dir(config)
  hint = " This looks like an aligned data set: use config.model='pix2pix'." if (base / "train").is_dir() else ""
  cap = _cap(config)
  return UnalignedFolders(_images_in(base / f"{phase}A", cap, hint), _images_in(base / f"{phase}B", cap, hint))


def _tfds_unpaired(config, phase: str) -> TfdsUnpaired:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import, tfds only)

  name, root = f"cycle_gan/{config.data.name}", config.data.root
  sources = []
  for split in (f"{phase}A", f"{phase}B"):
    try:
      source = tfds.data_source(name, split=split, data_dir=root, download=False)
    except Exception as e:  # tfds raises many types for "not prepared"
      prepared = pathlib.Path(root) / name
      why = f"{e}" if prepared.is_dir() else f"there is no prepared data set at {prepared}."
      raise FileNotFoundError(
          f"tfds could not open {name} split {split} in data_dir {root!r} (config.data.root): {why}"
          f" Prepare it with `tfds build {name} --data_dir {root} --file_format array_record` (needs"
          f" TensorFlow), or use config.data.source='folder' after"
          f" `{download_command(config.data.name, root, 'cyclegan')}`.") from e
    if len(source) == 0:
      raise FileNotFoundError(f"tfds {name} split {split} in {root!r} is empty.")
    sources.append(source)
  cap = _cap(config) or max(len(s) for s in sources)
  return TfdsUnpaired(sources[0], sources[1], min(len(sources[0]), cap), min(len(sources[1]), cap))


def _source(config, train: bool) -> PairedSource | UnpairedSource:
  """The examples of the train or test split, as chosen by config.data.source and config.model."""
  kind = config.data.source
  if kind == "builtin":
    size = config.load_size if train else config.crop_size  # test images: already at crop_size
    split = _TRAIN if train else _TEST
    n = config.data.num_train if train else config.data.num_test
    n = min(n, _cap(config) or n)
    if n < 1:
      raise ValueError(f"config.data.num_{'train' if train else 'test'}={n} must be at least 1.")
    if _is_paired(config) or not train:  # the unpaired eval set is paired, so it can be scored
      return BuiltinPairs(config.seed, split, size, n)
    return BuiltinUnpaired(config.seed, split, size, n, n)
  if kind == "folder":
    if _is_paired(config):
      return _aligned_folder(config, "train" if train else "test")
    return _unaligned_folders(config, "train" if train else "test")
  if kind == "tfds":
    if _is_paired(config):
      raise ValueError(
          "config.data.source='tfds' serves unpaired cycle_gan/* data only; paired (pix2pix) data comes"
          " as the official A|B folders: use config.data.source='folder' and"
          f" `{download_command(config.data.name, config.data.root)}`.")
    return _tfds_unpaired(config, "train" if train else "test")
  raise ValueError(f"config.data.source={kind!r} is not one of builtin, folder, tfds.")


def _length(source: PairedSource | UnpairedSource) -> int:
  """Examples per epoch: pairs, or max(|A|, |B|) for unpaired domains (the official length)."""
  if hasattr(source, "pair"):
    return len(source)
  return max(source.len_a, source.len_b)


# ---------------------------------------------------------------------------------------------
# Preprocessing (the official get_params / get_transform, for the modes supported here).
# ---------------------------------------------------------------------------------------------


class Augment(NamedTuple):
  """The random part of one image's preprocessing (the official get_params)."""
  left: int
  top: int
  flip: bool


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Resize / crop / flip as config.preprocess says, then uint8 -> float32 in [-1, 1]."""
  mode: str
  load_size: int
  crop_size: int
  flip: bool

  @classmethod
  def from_config(cls, config) -> Preprocess:
    mode = config.preprocess
    if mode not in SUPPORTED_PREPROCESS:
      raise NotImplementedError(
          f"config.preprocess={mode!r} is not implemented yet (supported: {', '.join(SUPPORTED_PREPROCESS)}).")
    if mode == "resize_and_crop" and config.crop_size > config.load_size:
      raise ValueError(
          f"config.crop_size={config.crop_size} must not exceed config.load_size={config.load_size}"
          " with preprocess 'resize_and_crop'.")
    return cls(mode, config.load_size, config.crop_size, not config.no_flip)

  def draw(self, rng: np.random.Generator, size: tuple[int, int]) -> Augment:
    """Crop position and flip for an image of `size` (w, h): x, then y, then flip, as upstream."""
    w, h = (self.load_size, self.load_size) if self.mode == "resize_and_crop" else size
    left = top = 0
    if self.mode != "none":
      if w < self.crop_size or h < self.crop_size:
        raise ValueError(
            f"config.crop_size={self.crop_size} is larger than an image of {w}x{h}"
            f" (config.preprocess={self.mode!r}).")
      left = int(rng.integers(0, w - self.crop_size + 1))
      top = int(rng.integers(0, h - self.crop_size + 1))
    flip = self.flip and bool(rng.random() > 0.5)
    return Augment(left, top, flip)

  def train(self, image: Image.Image, aug: Augment, channels: int) -> np.ndarray:
    """Training transform: (H, W, channels) float32 in [-1, 1]."""
    image = _to_channels(image, channels)
    if self.mode == "resize_and_crop":
      image = _resize(image, (self.load_size, self.load_size))
    if self.mode == "none":
      image = _resize(image, _multiple_of_4(image.size))
    else:
      c = self.crop_size
      image = image.crop((aug.left, aug.top, aug.left + c, aug.top + c))
    if aug.flip:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_float(image)

  def test(self, image: Image.Image, channels: int) -> np.ndarray:
    """Test-time transform (official test.py: load_size = crop_size, no flip; 'crop' is centred)."""
    image = _to_channels(image, channels)
    c = self.crop_size
    if self.mode == "resize_and_crop":
      image = _resize(image, (c, c))
    elif self.mode == "crop":
      w, h = image.size
      if w < c or h < c:
        raise ValueError(f"config.crop_size={c} is larger than a test image of {w}x{h}.")
      left, top = (w - c) // 2, (h - c) // 2
      image = image.crop((left, top, left + c, top + c))
    else:
      image = _resize(image, _multiple_of_4(image.size))
    return to_float(image)


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
  mode = "L" if channels == 1 else "RGB"
  return image if image.mode == mode else image.convert(mode)


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
  return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def _multiple_of_4(size: tuple[int, int]) -> tuple[int, int]:
  """The official 'none' mode rounds each side to the nearest multiple of 4."""
  return tuple(max(4, int(round(s / 4) * 4)) for s in size)


def to_float(image: Image.Image) -> np.ndarray:
  """uint8 image -> (H, W, C) float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
  x = np.asarray(image, dtype=np.float32)
  if x.ndim == 2:
    x = x[:, :, None]
  return x / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
  """float in [-1, 1] -> uint8 (the inverse of `to_float`, rounded)."""
  return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Examples and the pipeline.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Examples:
  """Example index -> dict(A=(H, W, input_nc), B=(H, W, output_nc)) float32 in [-1, 1].

  Called by grain's random_map with the example index (from the shuffled stream) and an RNG keyed
  by the stream position. Each file is decoded once per call. Picklable, for worker processes.
  """
  source: Any
  prep: Preprocess
  input_nc: int
  output_nc: int
  swap: bool  # config.direction == 'BtoA': the right side / domain B becomes the generator input.
  serial: bool  # unaligned: B at index mod |B| instead of a random one.

  def _channels(self) -> tuple[int, int]:
    """Channel counts of (left side or domain A, right side or domain B) before the swap."""
    return (self.output_nc, self.input_nc) if self.swap else (self.input_nc, self.output_nc)

  def _out(self, first: np.ndarray, second: np.ndarray) -> Batch:
    return {"A": second, "B": first} if self.swap else {"A": first, "B": second}

  def __call__(self, index: int, rng: np.random.Generator) -> Batch:
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "pair"):
      left, right = self.source.pair(index)
      aug = self.prep.draw(rng, left.size)  # one crop and flip for both sides
      return self._out(self.prep.train(left, aug, nc_first), self.prep.train(right, aug, nc_second))
    src = self.source
    j = index % src.len_b if self.serial else int(rng.integers(src.len_b))
    image_a, image_b = src.image_a(index % src.len_a), src.image_b(j)
    aug_a = self.prep.draw(rng, image_a.size)
    aug_b = self.prep.draw(rng, image_b.size)
    return self._out(self.prep.train(image_a, aug_a, nc_first), self.prep.train(image_b, aug_b, nc_second))

  def test(self, index: int) -> Batch:
    """The deterministic test-time example `index` (unaligned: A[i mod |A|], B[i mod |B|])."""
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "pair"):
      first, second = self.source.pair(index)
    else:
      first = self.source.image_a(index % self.source.len_a)
      second = self.source.image_b(index % self.source.len_b)
    return self._out(self.prep.test(first, nc_first), self.prep.test(second, nc_second))


def _check_channels(config) -> None:
  for field in ("input_nc", "output_nc"):
    if config[field] not in (1, 3):
      raise ValueError(f"config.{field}={config[field]}: image data has 1 (grayscale) or 3 (RGB) channels.")


def _examples(config, train: bool) -> Examples:
  _check_channels(config)
  prep = Preprocess.from_config(config)
  return Examples(_source(config, train), prep, config.input_nc, config.output_nc,
                  swap=config.direction == "BtoA", serial=config.serial_batches)


def derived_seed(seed: int, purpose: int) -> int:
  """An independent 32-bit seed for one use (shuffle, augmentation) of config.seed."""
  return int(np.random.SeedSequence([seed % 2**32, purpose]).generate_state(1)[0])


def train_size(config) -> int:
  """Examples per epoch: the number of pairs, or max(|A|, |B|) for unpaired data (cycle_gan).

  Counts files (or generated examples) after config.max_dataset_size; decodes nothing.
  """
  return _length(_source(config, train=True))


def local_batch_size(config, process_count: int) -> int:
  """config.batch_size (global) split over processes; ValueError if it does not divide."""
  if config.batch_size % process_count:
    raise ValueError(
        f"config.batch_size={config.batch_size} (the global batch) must be divisible by the"
        f" number of processes ({process_count}).")
  return config.batch_size // process_count


def _allow_grain_multiprocessing() -> None:
  """grain 0.2.18 reads absl flags in mp_prefetch and fails outside an absl app (google/grain#1355)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """An endless iterator of this process's training batches.

  Global batch k holds stream positions [k*B, (k+1)*B) (B = config.batch_size); this process
  yields its rows [p*b, (p+1)*b), b = B // process_count, and loads nothing else. The stream is
  the training set shuffled anew each epoch (in order with config.serial_batches), and every
  example's crop, flip and unaligned B index come from an RNG keyed by config.seed and its stream
  position, so the global batches do not depend on process_count. Missing data fails here.

  Args:
    config: the run config (model, direction, preprocess options, batch_size, seed, data.*).
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()).
  Returns:
    A grain DatasetIterator of dict(A=(b, H, W, input_nc), B=(b, H, W, output_nc)) float32 in
    [-1, 1]; get_state()/set_state() resume it exactly.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
  b = local_batch_size(config, process_count)
  examples = _examples(config, train=True)
  ds = grain.MapDataset.range(_length(examples.source))
  if not config.serial_batches:
    ds = ds.shuffle(seed=derived_seed(config.seed, _SHUFFLE))  # index >= length: next epoch's order
  ds = ds.repeat().random_map(examples, seed=derived_seed(config.seed, _AUGMENT))
  # Blocks of b consecutive stream positions; global batch k is blocks [k*P, (k+1)*P), and process
  # p takes block k*P + p. Slicing a MapDataset is lazy: other processes' blocks are never loaded.
  ds = ds.batch(b, drop_remainder=True)[process_index::process_count]
  workers = config.data.num_workers
  threads = 2 if workers > 0 else max(1, min(8, os.cpu_count() or 1))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
  if workers > 0:
    _allow_grain_multiprocessing()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def make_eval_set(config) -> dict[str, np.ndarray]:
  """The first config.num_eval_images test examples, preprocessed as the official test.py does.

  Images are resized to crop_size (no crop jitter, no flip). Paired folders read test/ (else val/);
  unaligned folders and tfds read testA/testB, A[i mod |A|] with B[i mod |B|]. Built-in data is
  always paired here (for cycle_gan too): B = render(A), generated directly at crop_size.

  Returns:
    dict(A=(n, H, W, input_nc), B=(n, H, W, output_nc)) float32 in [-1, 1], n = min(num_eval_images,
    test examples), and 'aligned': np.bool_, True when B[i] is the true translation of A[i].
  """
  examples = _examples(config, train=False)
  n = min(config.num_eval_images, _length(examples.source))
  items = [examples.test(i) for i in range(n)]
  out = {}
  for key, nc in (("A", config.input_nc), ("B", config.output_nc)):
    if items:
      out[key] = np.stack([item[key] for item in items])
    else:
      out[key] = np.zeros((0, config.crop_size, config.crop_size, nc), np.float32)
  out["aligned"] = np.bool_(config.data.source == "builtin" or _is_paired(config))
  return out
