"""Input pipelines: built-in generated data, the official folder layouts, and tfds cycle_gan/*.

The training loop calls four functions:

  train_size(config)            examples per epoch (after max_dataset_size and skipped files)
  train_image_hw(config)        (H, W) of every training example: one static shape for the jitted step
  make_train_iterator(config)   an endless grain iterator of host-local batches dict(A, B)
  make_eval_set(config)         the first num_eval_images test examples, as numpy arrays

and inference calls `single_folder(path, config)` (the official 'single' mode) and
`load_image(path, config, channels)` (one image, with the official test-time transform).

A is always the generator input: `config.direction == 'BtoA'` swaps the two sides (paired data)
or the two domains (unpaired data), as the official models do in `set_input`.

Sources (`config.data.source`):
  'builtin'  label maps and their renderings, generated from config.seed (offline, any size).
             `render(label_map)` is the exact label -> photo mapping.
  'folder'   `<data.root>/<data.name>/`: train/ val/ test/ of A|B images (pix2pix, 'aligned'), or
             trainA/ trainB/ testA/ testB/ (cycle_gan, 'unaligned'). Files: jpg, jpeg, png, ppm,
             bmp, tif, tiff in any letter case, 8 or 16 bits, any PIL mode (see `to_8bit`).
  'tfds'     tfds `cycle_gan/<data.name>` splits trainA/trainB/testA/testB (unpaired data only).

Preprocessing (`config.preprocess`, the official get_params / get_transform; see `Preprocess`):
resize_and_crop, crop, scale_width, scale_width_and_crop and none, then a random horizontal flip
unless config.no_flip. Crops are crop_size x crop_size, or crop_size (height) x crop_width. A jitted
step needs one shape, so 'none' and 'scale_width' round sizes to the generator's multiple and every
image must give the shape of the data set's first image.

Bad files: unless config.data.check_images is False, every file of a folder split is decoded once
(in threads) before anything else, and ONE BadImageError lists every unreadable, truncated or
wrongly shaped file with its reason; config.data.skip_bad_images leaves them out instead and
prints their count and names. A file that fails later (changed after the check) raises
BadImageError naming it, from grain's worker threads and processes alike.

Determinism and multi-host: the examples form one global stream, shuffled per epoch with a seed
derived from config.seed. Each example's random crop, flip and (unaligned) B index come from an RNG
keyed by config.seed and the example's position in that stream, never by the process. Global batch
k is stream positions [k*B, (k+1)*B); process p loads only rows [p*b, (p+1)*b) of it, where
b = B / process_count, which is the layout `jax.make_array_from_process_local_data` expects on a
1-D data mesh. Each example is decoded and augmented once, by the process that uses it. The
iterator's get_state()/set_state() resume it exactly, with or without worker processes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import pathlib
import time
from typing import Any, NamedTuple, Protocol

import grain
import numpy as np
from PIL import Image

from gantx import config as config_lib
from gantx.download import IMG_EXTENSIONS, download_command, list_images

Batch = dict[str, np.ndarray]

# Purposes mixed with config.seed into independent seeds.
_SHUFFLE, _AUGMENT = 1, 2
# Built-in data: which split and which stream of label maps.
_TRAIN, _TEST = 0, 1
_PAIRS, _DOMAIN_A, _DOMAIN_B = 0, 1, 2
# Modes whose output size follows the image (rounded to the generator's multiple), not the crop.
_DATA_SIZED = ("none", "scale_width")


class BadImageError(ValueError):
  """Image files that cannot be decoded, or that do not fit the data set (an aligned file that is
  not an A|B pair, an image smaller than the crop, a shape other than the data set's)."""


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

  def name(self, index: int) -> str:
    return f"built-in pair {index}"


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

  def name_a(self, index: int) -> str:
    return f"built-in A image {index}"

  def name_b(self, index: int) -> str:
    return f"built-in B image {index}"


# ---------------------------------------------------------------------------------------------
# Decoding image files.
# ---------------------------------------------------------------------------------------------

# PIL modes of 16-bit grayscale files: PNG and TIFF open as 'I;16*', PGM and signed TIFF as 'I'.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_8bit(image: Image.Image) -> Image.Image:
  """Any decoded PIL image as 'L' or 'RGB', 8 bits per channel.

  Upstream calls `convert('RGB')` on every file; this does the same except where that is wrong:
  - 16-bit grayscale (modes 'I;16*' and 'I'): scaled by 255/65535 and rounded. PIL's convert
    clips at 255 instead, so upstream sees all but the darkest 0.4% of the range as white (a known
    upstream bug). 32-bit integer files are read as 16-bit too, clipped to [0, 65535].
  - 32-bit float ('F', float TIFF): read as [0, 1], clipped, scaled by 255.
  16-bit RGB(A) PNG and TIFF arrive from PIL already reduced to 8 bits per channel (high byte).
  Everything else gets PIL's convert('RGB'), as upstream: RGBA, LA and PA lose their alpha (it is
  dropped, not composited), palettes ('P') are looked up, CMYK and YCbCr are converted. 'L' and
  'RGB' pass unchanged: a grayscale file stays one channel until `channels` asks for three.
  """
  if image.mode in _SIXTEEN_BIT_MODES:
    x = np.clip(np.asarray(image, np.float32), 0, 65535) * (255 / 65535)
  elif image.mode == "F":
    x = np.clip(np.asarray(image, np.float32), 0, 1) * 255
  elif image.mode in ("L", "RGB"):
    return image
  else:
    return image.convert("RGB")
  return Image.fromarray(np.rint(x).astype(np.uint8))


def _decode_sized(path: os.PathLike | str, reduced: bool) -> tuple[Image.Image, tuple[int, int]]:
  """(`decode(path)`, the file's (w, h)); `reduced` decodes JPEGs at 1/8 scale (the bad-file check:
  every byte of the entropy-coded data is still read, so truncation and corruption are found, but
  the inverse DCT is mostly skipped), so the image is smaller than the file's size then."""
  try:
    with Image.open(path) as image:
      size = image.size
      if reduced:
        image.draft(None, (1, 1))  # the smallest scale the decoder offers; a no-op except for JPEG
      image.load()
      return to_8bit(image), size
  except Exception as e:  # noqa: BLE001 -- anything a decoder raises means this file is unusable
    raise BadImageError(f"Cannot decode image file {path}: {type(e).__name__}: {e}") from e


def decode(path: os.PathLike | str) -> Image.Image:
  """Decodes an image file into an 'L' or 'RGB' image (`to_8bit`).

  Raises BadImageError naming the file, whatever the decoder raised (PIL raises OSError,
  SyntaxError, ValueError and others on damaged files). It pickles, so grain re-raises it, message
  and type intact, from worker processes.
  """
  return _decode_sized(path, reduced=False)[0]


def _aligned_problem(w: int, h: int) -> str | None:
  """Why a w x h file is not an A|B pair, or None."""
  if w % 2 or w < 2:  # upstream splits at int(w / 2) whatever w is; an odd w gives A and B unequal sizes
    return (f"is {w}x{h} (width x height): an aligned (pix2pix) image must be A|B side by side, with an"
            " even width (combine A and B with datasets/combine_A_and_B.py of upstream)")
  return None


def split_aligned(image: Image.Image, path: os.PathLike | str) -> tuple[Image.Image, Image.Image]:
  """Splits an A|B image at int(w / 2) into its left (A) and right (B) halves."""
  w, h = image.size
  if (why := _aligned_problem(w, h)) is not None:
    raise BadImageError(f"{path} {why}.")
  half = w // 2
  return image.crop((0, 0, half, h)), image.crop((half, 0, w, h))


# ---------------------------------------------------------------------------------------------
# Folder and tfds sources.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AlignedFolder:
  """The official 'aligned' mode: every image under `folder` is an A|B pair."""
  folder: pathlib.Path
  paths: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)

  def pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    path = self.paths[index]
    return split_aligned(decode(path), path)

  def name(self, index: int) -> str:
    return self.paths[index]


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
    return decode(self.paths_a[index])

  def image_b(self, index: int) -> Image.Image:
    return decode(self.paths_b[index])

  def name_a(self, index: int) -> str:
    return self.paths_a[index]

  def name_b(self, index: int) -> str:
    return self.paths_b[index]


@dataclasses.dataclass(frozen=True)
class TfdsUnpaired:
  """tfds cycle_gan/<name>: two random-access sources (their 'image' feature, uint8 HxWx3)."""
  source_a: Any
  source_b: Any
  len_a: int
  len_b: int
  label: str  # e.g. 'cycle_gan/horse2zebra train' (+ 'A[i]' or 'B[i]'), for messages

  def image_a(self, index: int) -> Image.Image:
    return Image.fromarray(np.asarray(self.source_a[index]["image"]))

  def image_b(self, index: int) -> Image.Image:
    return Image.fromarray(np.asarray(self.source_b[index]["image"]))

  def name_a(self, index: int) -> str:
    return f"tfds {self.label}A[{index}]"

  def name_b(self, index: int) -> str:
    return f"tfds {self.label}B[{index}]"


class PairedSource(Protocol):
  def __len__(self) -> int: ...
  def pair(self, index: int) -> tuple[Image.Image, Image.Image]: ...
  def name(self, index: int) -> str: ...


class UnpairedSource(Protocol):
  len_a: int
  len_b: int
  def image_a(self, index: int) -> Image.Image: ...
  def image_b(self, index: int) -> Image.Image: ...
  def name_a(self, index: int) -> str: ...
  def name_b(self, index: int) -> str: ...


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
    parent = folder.parent
    present = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else None
    where = f"{parent} holds: {present or 'nothing'}" if present is not None else f"{parent} does not exist either"
    raise FileNotFoundError(f"Folder {folder} not found ({where}).{hint}")
  paths = [str(p) for p in list_images(folder)]
  if not paths:
    raise FileNotFoundError(f"No images ({', '.join(IMG_EXTENSIONS)}) in folder {folder}.{hint}")
  return tuple(paths[:cap])


def single_folder(path: os.PathLike | str, max_images: int | None = None) -> tuple[str, ...]:
  """The official 'single' mode: the sorted image files under `path` (recursively), the first
  `max_images` of them (None: all); FileNotFoundError naming the folder if it holds none."""
  return _images_in(pathlib.Path(path), max_images)


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
  (paths,) = _checked(config, (_images_in(folder, _cap(config), hint),), aligned=True, test=phase != "train")
  return AlignedFolder(folder, paths)


def _unaligned_folders(config, phase: str) -> UnalignedFolders:
  base = _dataset_dir(config)
  hint = " This looks like an aligned data set: use config.model='pix2pix'." if (base / "train").is_dir() else ""
  cap = _cap(config)
  lists = (_images_in(base / f"{phase}A", cap, hint), _images_in(base / f"{phase}B", cap, hint))
  return UnalignedFolders(*_checked(config, lists, aligned=False, test=phase != "train"))


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
  return TfdsUnpaired(sources[0], sources[1], min(len(sources[0]), cap), min(len(sources[1]), cap),
                      label=f"{name} {phase}")


def _source(config, train: bool) -> PairedSource | UnpairedSource:
  """The examples of the train or test split, as chosen by config.data.source and config.model.
  Folder splits are checked for bad files first (`_checked`)."""
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


def _first_size(source: PairedSource | UnpairedSource) -> tuple[int, int]:
  """(w, h) of the first example image (A side or domain A): the data set's reference shape."""
  return (source.pair(0)[0] if hasattr(source, "pair") else source.image_a(0)).size


# ---------------------------------------------------------------------------------------------
# The bad-file check.
# ---------------------------------------------------------------------------------------------


def _inspect(path: str, aligned: bool) -> tuple[tuple[int, int] | None, str | None]:
  """Decodes `path` once: ((w, h) of its example image (one half if aligned), None), or (None, why)."""
  try:
    _, (w, h) = _decode_sized(path, reduced=True)
  except BadImageError as e:
    return None, f"cannot decode ({type(e.__cause__).__name__}: {e.__cause__})"
  if aligned:
    if (why := _aligned_problem(w, h)) is not None:
      return None, why
    w //= 2
  return (w, h), None


@functools.lru_cache(maxsize=8)
def _bad_files(lists: tuple[tuple[str, ...], ...], aligned: bool, prep: Preprocess, test: bool,
               signature: tuple) -> dict[str, str]:
  """{path: reason} for every file of `lists` that cannot be used, in order; cached per process.

  Each file is decoded once, in threads (PIL releases the GIL while decoding). A file that decodes
  is still bad if `prep` cannot turn it into an example of the data set's one shape: smaller than
  the crop, or, for 'none' and 'scale_width', another shape than the first good file's.
  `signature` (file sizes and times) only makes a changed file invalidate the cache.
  """
  del signature
  paths = [p for paths in lists for p in paths]
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor() as pool:
    found = list(pool.map(functools.partial(_inspect, aligned=aligned), paths))
  bad, hw = {}, None if prep.mode in _DATA_SIZED else prep.crop_hw
  for path, (size, why) in zip(paths, found):
    if why is None:
      hw = hw or prep.output_hw(size, test)  # 'none', 'scale_width': the first good file's shape
      why = prep.problem(size, hw, test)
    if why is not None:
      bad[path] = why
  print(f"Checked {len(paths)} image files under {os.path.commonpath(paths)} in {time.perf_counter() - start:.1f} s"
        f" (config.data.check_images): {len(bad) or 'none'} bad.", flush=True)
  return bad


def _stat_signature(path: str) -> tuple[int, int] | None:
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_size, st.st_mtime_ns


def _checked(config, lists: tuple[tuple[str, ...], ...], aligned: bool, test: bool) -> tuple[tuple[str, ...], ...]:
  """`lists` of image paths without their bad files, or BadImageError listing all of them.

  Runs when config.data.check_images or config.data.skip_bad_images is set (skipping needs the
  check), once per process and split; every process checks the whole split, so that all leave out
  the same files. Files are capped by max_dataset_size before the check, as upstream selects
  them, so skipping leaves fewer.
  """
  if not (config.data.check_images or config.data.skip_bad_images):
    return lists
  signature = tuple(_stat_signature(p) for paths in lists for p in paths)
  bad = _bad_files(lists, aligned, Preprocess.from_config(config), test, signature)
  if not bad:
    return lists
  total = sum(len(paths) for paths in lists)
  listing = "\n".join(f"  {path}: {why}" for path, why in bad.items())
  if not config.data.skip_bad_images:
    raise BadImageError(
        f"{len(bad)} of {total} image files cannot be used:\n{listing}\nFix or remove them, or set"
        " config.data.skip_bad_images=True to leave them out.")
  kept = tuple(tuple(p for p in paths if p not in bad) for paths in lists)
  if not all(kept):
    raise BadImageError(f"Every image file of a folder is bad ({len(bad)} of {total}):\n{listing}")
  _print_once(f"Leaving out {len(bad)} of {total} image files (config.data.skip_bad_images):\n{listing}")
  return kept


@functools.cache
def _print_once(message: str) -> None:
  """Prints `message` the first time this process is given it (upstream warns once, too)."""
  print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Preprocessing (the official get_params / get_transform).
# ---------------------------------------------------------------------------------------------


class Augment(NamedTuple):
  """The random part of one image's preprocessing (the official get_params)."""
  left: int
  top: int
  flip: bool


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Resize / crop / flip as config.preprocess says, then uint8 -> float32 in [-1, 1].

  Sizes are (w, h), as PIL gives them; shapes (h, w). Training (`train`, the official
  get_transform with get_params), with crop (ch, cw) = config_lib.crop_hw and L = load_size:
    resize_and_crop       resize to L x L (bicubic), then a random ch x cw crop;
    crop                  a random ch x cw crop of the image as it is;
    scale_width           resize to width L and height max(int(L * h / w), ch), keeping the aspect;
    scale_width_and_crop  that, then a random ch x cw crop;
    none                  no resize but rounding,
  then a horizontal flip with probability 1/2 unless config.no_flip. 'none' and 'scale_width' round
  both sides to the nearest multiple of the generator's (`models.size_multiple`: 2**num_downs for
  a U-Net, 4 for a ResNet; upstream rounds 'none' to 4, which unet_256 cannot take, and does not
  round 'scale_width'), at least one multiple, in one bicubic resize.
  Test time (`test`, as upstream's test.py: L = crop size, no flip): resize_and_crop resizes to
  cw x ch; scale_width(_and_crop) scales to width cw; the crop modes crop the centre (upstream
  crops at random); 'none' and 'scale_width' keep the aspect ratio and round as above.
  """
  mode: str
  load_size: int
  crop_h: int
  crop_w: int
  flip: bool
  multiple: int  # 'none' and 'scale_width' round H and W to multiples of this

  @classmethod
  def from_config(cls, config) -> Preprocess:
    from gantx import models  # pylint: disable=g-import-not-at-top  (jax: main process only; workers unpickle)

    mode = config.preprocess
    if mode not in config_lib.PREPROCESS:
      raise ValueError(f"config.preprocess={mode!r} is not one of {', '.join(config_lib.PREPROCESS)}.")
    crop_h, crop_w = config_lib.crop_hw(config)
    if mode == "resize_and_crop" and max(crop_h, crop_w) > config.load_size:
      raise ValueError(
          f"config.crop_size={config.crop_size} (crop_width={config.crop_width}) must not exceed"
          f" config.load_size={config.load_size} with preprocess 'resize_and_crop'.")
    if mode == "scale_width_and_crop" and crop_w > config.load_size:
      raise ValueError(
          f"The crop width {crop_w} (config.crop_width, else crop_size) must not exceed"
          f" config.load_size={config.load_size}, the width preprocess 'scale_width_and_crop' scales to.")
    return cls(mode, config.load_size, crop_h, crop_w, not config.no_flip, models.size_multiple(config.netG))

  @property
  def crop_hw(self) -> tuple[int, int]:
    return self.crop_h, self.crop_w

  @property
  def crops(self) -> bool:
    return "crop" in self.mode

  def scaled(self, size: tuple[int, int], test: bool = False) -> tuple[int, int]:
    """(w, h) after the mode's resize (before any rounding and cropping)."""
    w, h = size
    if self.mode == "resize_and_crop":
      return (self.crop_w, self.crop_h) if test else (self.load_size, self.load_size)
    if self.mode.startswith("scale_width"):
      target = self.crop_w if test else self.load_size
      return target, max(int(target * h / w), self.crop_h)
    return w, h

  def resized(self, size: tuple[int, int], test: bool = False) -> tuple[int, int]:
    """(w, h) of the image the crop is taken from: `scaled`, rounded for 'none' and 'scale_width'."""
    w, h = self.scaled(size, test)
    if self.mode in _DATA_SIZED:
      m = self.multiple
      return max(m, int(round(w / m)) * m), max(m, int(round(h / m)) * m)
    return w, h

  def output_hw(self, size: tuple[int, int], test: bool = False) -> tuple[int, int]:
    """(H, W) of the example an image of `size` becomes."""
    return self.crop_hw if self.crops else self.resized(size, test)[::-1]

  def problem(self, size: tuple[int, int], hw: tuple[int, int], test: bool = False) -> str | None:
    """Why an image of `size` cannot become an example of shape `hw`, or None."""
    w, h = self.resized(size, test)
    if self.crops and (w < self.crop_w or h < self.crop_h):
      scaled = "" if (w, h) == tuple(size) else f", {w}x{h} after preprocess {self.mode!r} resizes it"
      return (f"is {size[0]}x{size[1]} (width x height{scaled}): smaller than the {self.crop_w}x{self.crop_h}"
              " crop (config.crop_width x config.crop_size)")
    out = self.output_hw(size, test)
    if out != tuple(hw):
      return (f"is {size[0]}x{size[1]} (width x height) and becomes {out[1]}x{out[0]} under preprocess"
              f" {self.mode!r}, but the data set's first image becomes {hw[1]}x{hw[0]}: training needs one"
              " shape; for images of different sizes use preprocess 'resize_and_crop', 'crop' or"
              " 'scale_width_and_crop'")
    return None

  def warn_if_rounded(self, size: tuple[int, int], test: bool = False) -> None:
    """Upstream's one-time warning when 'none' (here also 'scale_width') changes the image size."""
    scaled, resized = self.scaled(size, test), self.resized(size, test)
    if self.mode in _DATA_SIZED and scaled != resized:
      m = self.multiple
      _print_once(f"The image size needs to be a multiple of {m} (the generator's). The loaded image size was"
                  f" {scaled}, so it was adjusted to {resized}. This adjustment will be done to all images"
                  f" whose sizes are not multiples of {m}.")

  def draw(self, rng: np.random.Generator, size: tuple[int, int]) -> Augment:
    """Crop position and flip for an image of `size` (w, h): x, then y, then flip, as upstream."""
    w, h = self.resized(size)
    left = top = 0
    if self.crops:
      left = int(rng.integers(0, w - self.crop_w + 1))
      top = int(rng.integers(0, h - self.crop_h + 1))
    flip = self.flip and bool(rng.random() > 0.5)
    return Augment(left, top, flip)

  def train(self, image: Image.Image, aug: Augment, channels: int) -> np.ndarray:
    """Training transform: (H, W, channels) float32 in [-1, 1]. Check `problem` first."""
    image = _to_channels(image, channels)
    image = _resize(image, self.resized(image.size))
    if self.crops:
      image = _crop(image, aug.left, aug.top, self.crop_w, self.crop_h)
    if aug.flip:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_float(image)

  def test(self, image: Image.Image, channels: int) -> np.ndarray:
    """Test-time transform (see the class docstring): (H, W, channels) float32 in [-1, 1]."""
    image = _to_channels(image, channels)
    w, h = self.resized(image.size, test=True)
    image = _resize(image, (w, h))
    if self.crops:
      image = _crop(image, (w - self.crop_w) // 2, (h - self.crop_h) // 2, self.crop_w, self.crop_h)
    return to_float(image)


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
  """'L' for 1 channel, else 'RGB' (upstream: convert('RGB'), then Grayscale(1) when nc == 1)."""
  mode = "L" if channels == 1 else "RGB"
  return image if image.mode == mode else to_8bit(image).convert(mode)


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
  return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def _crop(image: Image.Image, left: int, top: int, w: int, h: int) -> Image.Image:
  return image if (left, top, w, h) == (0, 0, *image.size) else image.crop((left, top, left + w, top + h))


def to_float(image: Image.Image) -> np.ndarray:
  """uint8 image or array (..., H, W[, C]) -> float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
  x = np.asarray(image, dtype=np.float32)
  if x.ndim == 2:
    x = x[:, :, None]
  return x / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
  """float in [-1, 1] -> uint8 (the inverse of `to_float`, rounded)."""
  return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _check_channels(config) -> None:
  for field in ("input_nc", "output_nc"):
    if config[field] not in (1, 3):
      raise ValueError(f"config.{field}={config[field]}: image data has 1 (grayscale) or 3 (RGB) channels.")


def load_image(path: os.PathLike | str, config, channels: int) -> np.ndarray:
  """One image file with the official test-time transform, for inference (`translate`).

  Sizes, with (ch, cw) = config_lib.crop_hw(config): resize_and_crop gives ch x cw (the whole image,
  resized); crop and scale_width_and_crop give the centred ch x cw crop (of the image scaled to
  width cw for the latter); 'none' keeps the image's size and 'scale_width' scales it to width cw
  (height at least ch), both keeping the aspect ratio and rounding each side to the nearest
  multiple of the generator's (`models.size_multiple(config.netG)`, printed once when it changes
  the size). No flip. Grayscale/RGB conversion and 16-bit scaling as `to_8bit`.

  Args:
    path: an image file (any of IMG_EXTENSIONS).
    config: the run config (preprocess, load_size, crop_size, crop_width, netG).
    channels: 1 (grayscale) or 3 (RGB), e.g. config.input_nc.
  Returns:
    (H, W, channels) float32 in [-1, 1].
  Raises:
    BadImageError naming the file if it cannot be decoded or is smaller than the crop.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels={channels}: image data has 1 (grayscale) or 3 (RGB) channels.")
  prep = Preprocess.from_config(config)
  image = decode(path)
  size = image.size
  hw = prep.output_hw(size, test=True)
  if (why := prep.problem(size, hw, test=True)) is not None:
    raise BadImageError(f"{path} {why}.")
  prep.warn_if_rounded(size, test=True)
  return prep.test(image, channels)


# ---------------------------------------------------------------------------------------------
# Examples and the pipeline.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Examples:
  """Example index -> dict(A=(H, W, input_nc), B=(H, W, output_nc)) float32 in [-1, 1].

  Called by grain's random_map with the example index (from the shuffled stream) and an RNG keyed
  by the stream position. Each file is decoded once per call. Picklable, for worker processes.
  An image that does not give the one shape `hw` raises BadImageError naming it.
  """
  source: Any
  prep: Preprocess
  input_nc: int
  output_nc: int
  swap: bool  # config.direction == 'BtoA': the right side / domain B becomes the generator input.
  serial: bool  # unaligned: B at index mod |B| instead of a random one.
  hw: tuple[int, int]  # (H, W) of every example of this split
  test_time: bool  # the test-time transform (`test`) rather than the training one

  def _channels(self) -> tuple[int, int]:
    """Channel counts of (left side or domain A, right side or domain B) before the swap."""
    return (self.output_nc, self.input_nc) if self.swap else (self.input_nc, self.output_nc)

  def _out(self, first: np.ndarray, second: np.ndarray) -> Batch:
    return {"A": second, "B": first} if self.swap else {"A": first, "B": second}

  def _check(self, image: Image.Image, name: str) -> Image.Image:
    if (why := self.prep.problem(image.size, self.hw, self.test_time)) is not None:
      raise BadImageError(f"{name} {why}.")
    return image

  def _pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    left, right = self.source.pair(index)
    return self._check(left, self.source.name(index)), right  # the two halves have one size

  def _unpaired(self, index: int, b_index: int) -> tuple[Image.Image, Image.Image]:
    src, i = self.source, index % self.source.len_a
    return self._check(src.image_a(i), src.name_a(i)), self._check(src.image_b(b_index), src.name_b(b_index))

  def __call__(self, index: int, rng: np.random.Generator) -> Batch:
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "pair"):
      left, right = self._pair(index)
      aug = self.prep.draw(rng, left.size)  # one crop and flip for both sides
      return self._out(self.prep.train(left, aug, nc_first), self.prep.train(right, aug, nc_second))
    len_b = self.source.len_b
    image_a, image_b = self._unpaired(index, index % len_b if self.serial else int(rng.integers(len_b)))
    aug_a = self.prep.draw(rng, image_a.size)
    aug_b = self.prep.draw(rng, image_b.size)
    return self._out(self.prep.train(image_a, aug_a, nc_first), self.prep.train(image_b, aug_b, nc_second))

  def test(self, index: int) -> Batch:
    """The deterministic test-time example `index` (unaligned: A[i mod |A|], B[i mod |B|])."""
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "pair"):
      first, second = self._pair(index)
    else:
      first, second = self._unpaired(index, index % self.source.len_b)
    return self._out(self.prep.test(first, nc_first), self.prep.test(second, nc_second))


def _examples(config, train: bool) -> Examples:
  """The split's examples; its one shape comes from the crop, or ('none', 'scale_width') from the
  first image, as the bad-file check took it."""
  _check_channels(config)
  prep = Preprocess.from_config(config)
  source = _source(config, train)
  test = not train
  if prep.crops:
    hw = prep.crop_hw
  else:
    size = _first_size(source)
    prep.warn_if_rounded(size, test)
    hw = prep.output_hw(size, test)
  return Examples(source, prep, config.input_nc, config.output_nc, swap=config.direction == "BtoA",
                  serial=config.serial_batches, hw=hw, test_time=test)


def train_image_hw(config) -> tuple[int, int]:
  """(H, W) of every training example the iterator yields: the crop (config_lib.crop_hw) for the
  crop modes; for 'none' and 'scale_width' the size the data set's first image becomes, rounded to
  the generator's multiple (a jitted step needs one shape; an image of another shape is a bad file).
  Runs the bad-file check, as every function here that opens the data set."""
  return _examples(config, train=True).hw


def derived_seed(seed: int, purpose: int) -> int:
  """An independent 32-bit seed for one use (shuffle, augmentation) of config.seed."""
  return int(np.random.SeedSequence([seed % 2**32, purpose]).generate_state(1)[0])


def train_size(config) -> int:
  """Examples per epoch: the number of pairs, or max(|A|, |B|) for unpaired data (cycle_gan).

  Counts files (or generated examples) after config.max_dataset_size and after leaving out bad
  files (config.data.skip_bad_images); the first call per process runs the bad-file check.
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


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1,
                        num_threads: int | None = None) -> grain.DatasetIterator:
  """An endless iterator of this process's training batches.

  Global batch k holds stream positions [k*B, (k+1)*B) (B = config.batch_size); this process
  yields its rows [p*b, (p+1)*b), b = B // process_count, and loads nothing else. The stream is
  the training set shuffled anew each epoch (in order with config.serial_batches), and every
  example's crop, flip and unaligned B index come from an RNG keyed by config.seed and its stream
  position, so the global batches do not depend on process_count. Missing data and bad files
  (the check) fail here.

  Loading: batches are prepared ahead by `num_threads` threads (PIL decodes and resizes without
  the GIL), in each of config.data.num_workers worker processes when there are any (grain
  mp_prefetch; its absl flag bug, google/grain#1355, is handled). Workers and threads change
  nothing in the batches.

  Args:
    config: the run config (model, direction, preprocess options, batch_size, seed, data.*).
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()).
    num_threads: threads per loading process; default 2 in each worker, else the cores (at most 8).
  Returns:
    A grain DatasetIterator of dict(A=(b, H, W, input_nc), B=(b, H, W, output_nc)) float32 in
    [-1, 1], (H, W) = train_image_hw(config); get_state()/set_state() resume it exactly.
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
  if num_threads is None:
    num_threads = 2 if workers > 0 else max(1, min(8, os.cpu_count() or 1))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads))
  if workers > 0:
    _allow_grain_multiprocessing()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def make_eval_set(config) -> dict[str, np.ndarray]:
  """The first config.num_eval_images test examples, preprocessed as the official test.py does.

  Test-time transform (`Preprocess`): no crop jitter, no flip, load_size = crop size. Paired
  folders read test/ (else val/); unaligned folders and tfds read testA/testB, A[i mod |A|] with
  B[i mod |B|]. Built-in data is always paired here (for cycle_gan too): B = render(A), generated
  directly at crop_size. Like training examples, all have one shape (for 'none' and 'scale_width',
  that of the first test image).

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
      out[key] = np.zeros((0, *examples.hw, nc), np.float32)
  out["aligned"] = np.bool_(config.data.source == "builtin" or _is_paired(config))
  return out
