"""Built-in data: facade-like label maps and a known, local rendering of them.

Generated from the config seed, offline, at any size: pix2pix learns label map -> rendering from
pairs (`BuiltinPairs`), CycleGAN the same mapping from unrelated label maps and renderings
(`BuiltinUnpaired`). `render` is the exact mapping, so a model's output can be scored against the
truth; evaluation reads generated label maps back with `labels_from_palette`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from PIL import Image

# Which split and which stream of label maps an example is drawn from.
TRAIN, TEST = 0, 1
_PAIRS, _DOMAIN_A, _DOMAIN_B = 0, 1, 2

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

