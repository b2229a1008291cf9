"""Preprocessing: the official get_params / get_transform, and one image for inference.

`Preprocess` resizes, crops and flips as config.preprocess says and maps uint8 to float32 in
[-1, 1]; `load_image` reads one file with the test-time transform (translate).
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np
from PIL import Image

from gantx import config as config_lib
from gantx.data.images import BadImageError, decode, print_once, to_8bit, to_float

# Modes whose output size follows the image (rounded to the generator's multiple), not the crop.
_DATA_SIZED = ("none", "scale_width")


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
      print_once(f"The image size needs to be a multiple of {m} (the generator's). The loaded image size was"
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



def check_channels(config) -> None:
  if config.model == "colorization":  # Lab's lightness and colours, from RGB photos (config.validate checks it)
    return
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

