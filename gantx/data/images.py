"""Image files: listing, decoding into 8-bit 'L' or 'RGB' images, the A|B split of aligned files,
and the bad-file check that decodes every file of a split once before training.

Every failure names the file (`BadImageError`), from grain's worker threads and processes alike.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
from typing import Any

import numpy as np
from etils import epath
from PIL import Image

from gantx import paths

# The extensions the official loaders accept (compared case-insensitively).
IMG_EXTENSIONS = ("jpg", "jpeg", "png", "ppm", "bmp", "tif", "tiff")


class BadImageError(ValueError):
  """Image files that cannot be decoded, or that do not fit the data set (an aligned file that is
  not an A|B pair, an image smaller than the crop, a shape other than the data set's)."""



def list_images(folder: os.PathLike | str) -> list[epath.Path]:
  """All image files under `folder` (recursively; local or in a bucket), sorted by path, as the
  official loaders read them."""
  found = [p for p in paths.walk_files(paths.path(folder)) if p.suffix[1:].lower() in IMG_EXTENSIONS]
  return sorted(found, key=str)


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
    with paths.path(path).open("rb") as f, Image.open(f) as image:
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
  if w < 2:
    return (f"is {w}x{h} (width x height): an aligned (pix2pix) image must be A|B side by side (make such files"
            " from folders of A and B images with `python -m gantx combine` or `python -m gantx make_aligned`)")
  return None


def split_aligned(image: Image.Image, path: os.PathLike | str) -> tuple[Image.Image, Image.Image]:
  """Splits an A|B image at int(w / 2), as upstream: A is the left int(w / 2) columns, B the rest (one
  column wider than A when w is odd; the bad-file check lists such files in one warning)."""
  w, h = image.size
  if (why := _aligned_problem(w, h)) is not None:
    raise BadImageError(f"{path} {why}.")
  half = w // 2
  return image.crop((0, 0, half, h)), image.crop((half, 0, w, h))



def to_float(image: Image.Image) -> np.ndarray:
  """uint8 image or array (..., H, W[, C]) -> float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
  x = np.asarray(image, dtype=np.float32)
  if x.ndim == 2:
    x = x[:, :, None]
  return x / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
  """float in [-1, 1] -> uint8 (the inverse of `to_float`, rounded)."""
  return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)



# ---------------------------------------------------------------------------------------------
# The bad-file check.
# ---------------------------------------------------------------------------------------------


def _inspect(path: str, aligned: bool) -> tuple[tuple[int, int] | None, str | None, bool]:
  """Decodes `path` once: ((w, h) of its example image (A's half if aligned), None, odd width), or
  (None, why, False)."""
  try:
    _, (w, h) = _decode_sized(path, reduced=True)
  except BadImageError as e:
    return None, f"cannot decode ({type(e.__cause__).__name__}: {e.__cause__})", False
  if aligned:
    if (why := _aligned_problem(w, h)) is not None:
      return None, why, False
    return (w // 2, h), None, bool(w % 2)
  return (w, h), None, False


@functools.lru_cache(maxsize=8)
def bad_files(lists: tuple[tuple[str, ...], ...], aligned: bool, prep: Any, test: bool,
              signature: tuple) -> tuple[dict[str, str], tuple[str, ...]]:
  """({path: reason} for every file of `lists` that cannot be used, the aligned files of odd width),
  in order; cached per process.

  Each file is decoded once, in threads (PIL releases the GIL while decoding). A file that decodes
  is still bad if `prep` cannot turn it into an example of the data set's one shape: smaller than
  the crop, or, for 'none' and 'scale_width', another shape than the first good file's. An aligned
  file of odd width is used as upstream uses it (`split_aligned`), and named.
  `signature` (file sizes and times) only makes a changed file invalidate the cache.
  """
  del signature
  paths = [p for paths in lists for p in paths]
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor() as pool:
    found = list(pool.map(functools.partial(_inspect, aligned=aligned), paths))
  bad, odd, hw = {}, [], prep.crop_hw if prep.crops else None
  for path, (size, why, odd_width) in zip(paths, found):
    if why is None:
      hw = hw or prep.output_hw(size, test)  # 'none', 'scale_width': the first good file's shape
      why = prep.problem(size, hw, test)
    if why is not None:
      bad[path] = why
    elif odd_width:
      odd.append(path)
  print(f"Checked {len(paths)} image files under {os.path.commonpath(paths)} in {time.perf_counter() - start:.1f} s"
        f" (config.data.check_images): {len(bad) or 'none'} bad.", flush=True)
  return bad, tuple(odd)


def stat_signature(path: str) -> tuple[int, int] | None:
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_size, st.st_mtime_ns



@functools.cache
def print_once(message: str) -> None:
  """Prints `message` the first time this process is given it (upstream warns once, too)."""
  print(message, flush=True)

