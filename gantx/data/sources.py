"""The examples of a split, as config.data.source and config.model choose them.

  'builtin'  `builtin.BuiltinPairs` / `BuiltinUnpaired`, generated from config.seed;
  'folder'   `<data.root>/<data.name>/`: train/ val/ test/ of A|B images (pix2pix, the official
             'aligned' mode, `AlignedFolder`), or trainA/ trainB/ testA/ testB/ (cycle_gan,
             'unaligned', `UnalignedFolders`); any folder of images for inference (`single_folder`);
  'tfds'     tfds `cycle_gan/<data.name>` splits trainA/trainB/testA/testB (`TfdsUnpaired`).

A paired source gives `pair(i)` -> (left, right) images; an unpaired one `image_a(i)`, `image_b(i)`.
Folder splits are checked for bad files before they are used (`checked`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Protocol

import numpy as np
from etils import epath
from PIL import Image

from gantx import download  # the command that fetches a missing data set (download imports images, not this)
from gantx import paths
from gantx.data import builtin, images
from gantx.data.images import IMG_EXTENSIONS, BadImageError, decode, list_images, split_aligned
from gantx.data.preprocess import Preprocess

@dataclasses.dataclass(frozen=True)
class AlignedFolder:
  """The official 'aligned' mode: every image under `folder` is an A|B pair."""
  folder: epath.Path
  paths: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)

  def pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    path = self.paths[index]
    return split_aligned(decode(path), path)

  def name(self, index: int) -> str:
    return self.paths[index]


@dataclasses.dataclass(frozen=True)
class PhotoFolder:
  """The official 'colorization' mode: every image under `folder` is a colour photo, its own pair
  (its lightness -> its colours; `gantx.data.lab`)."""
  folder: epath.Path
  paths: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.paths)

  def photo(self, index: int) -> Image.Image:
    return decode(self.paths[index])

  def name(self, index: int) -> str:
    return self.paths[index]


@dataclasses.dataclass(frozen=True)
class BuiltinPhotos:
  """The built-in renderings as colour photos (colorization offline)."""
  pairs: builtin.BuiltinPairs

  def __len__(self) -> int:
    return len(self.pairs)

  def photo(self, index: int) -> Image.Image:
    return self.pairs.pair(index)[1]

  def name(self, index: int) -> str:
    return f"built-in photo {index}"


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


def is_paired(config) -> bool:
  return config.model != "cycle_gan"  # pix2pix's A|B pairs; colorization's photos are their own pairs


def _dataset_dir(config) -> epath.Path:
  """`<data.root>/<data.name>` (local or in a bucket); FileNotFoundError with the download command
  if it is missing."""
  root, name = config.data.root, config.data.name
  paths.check_bucket(root, "config.data.root")
  path = paths.path(root) / name
  if not path.is_dir():
    kind = "pix2pix" if is_paired(config) else "cyclegan"
    where = "" if paths.is_remote(path) else f" ({os.path.abspath(path)})"
    raise FileNotFoundError(
        f"Data set folder {path}{where} does not exist (config.data.root={root!r},"
        f" config.data.name={name!r})."
        f" Get it with: {download.download_command(name, root, kind)}")
  return path


def _images_in(folder: epath.Path, cap: int | None, hint: str = "") -> tuple[str, ...]:
  """Sorted image paths under `folder`, capped; FileNotFoundError naming the folder if none."""
  if not folder.is_dir():
    parent = folder.parent
    present = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else None
    where = f"{parent} holds: {present or 'nothing'}" if present is not None else f"{parent} does not exist either"
    raise FileNotFoundError(f"Folder {folder} not found ({where}).{hint}")
  found = [str(p) for p in list_images(folder)]
  if not found:
    raise FileNotFoundError(f"No images ({', '.join(IMG_EXTENSIONS)}) in folder {folder}.{hint}")
  return tuple(found[:cap])


def single_folder(path: os.PathLike | str, max_images: int | None = None) -> tuple[str, ...]:
  """The official 'single' mode: the sorted image files under `path` (recursively), the first
  `max_images` of them (None: all); FileNotFoundError naming the folder if it holds none."""
  return _images_in(paths.path(path), max_images)


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
  (paths,) = checked(config, (_images_in(folder, _cap(config), hint),), aligned=True, test=phase != "train")
  return AlignedFolder(folder, paths)


def _photo_folder(config, phase: str) -> PhotoFolder:
  """`<data.root>/<data.name>/<phase>/` of colour photos (test: else val/), as the official colorization mode."""
  base = _dataset_dir(config)
  folder = base / phase
  if phase == "test" and not folder.is_dir() and (base / "val").is_dir():
    folder = base / "val"
  hint = " Colorization reads any colour photos: put them in train/ and test/ (or val/)."
  (paths,) = checked(config, (_images_in(folder, _cap(config), hint),), aligned=False, test=phase != "train")
  return PhotoFolder(folder, paths)


def _unaligned_folders(config, phase: str) -> UnalignedFolders:
  base = _dataset_dir(config)
  hint = " This looks like an aligned data set: use config.model='pix2pix'." if (base / "train").is_dir() else ""
  cap = _cap(config)
  lists = (_images_in(base / f"{phase}A", cap, hint), _images_in(base / f"{phase}B", cap, hint))
  return UnalignedFolders(*checked(config, lists, aligned=False, test=phase != "train"))


def _tfds_unpaired(config, phase: str) -> TfdsUnpaired:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import, tfds only)

  name, root = f"cycle_gan/{config.data.name}", config.data.root
  sources = []
  for split in (f"{phase}A", f"{phase}B"):
    try:
      source = tfds.data_source(name, split=split, data_dir=root, download=False)
    except Exception as e:  # tfds raises many types for "not prepared"
      prepared = paths.path(root) / name
      why = f"{e}" if prepared.is_dir() else f"there is no prepared data set at {prepared}."
      raise FileNotFoundError(
          f"tfds could not open {name} split {split} in data_dir {root!r} (config.data.root): {why}"
          f" Prepare it with `tfds build {name} --data_dir {root} --file_format array_record` (needs"
          f" TensorFlow), or use config.data.source='folder' after"
          f" `{download.download_command(config.data.name, root, 'cyclegan')}`.") from e
    if len(source) == 0:
      raise FileNotFoundError(f"tfds {name} split {split} in {root!r} is empty.")
    sources.append(source)
  cap = _cap(config) or max(len(s) for s in sources)
  return TfdsUnpaired(sources[0], sources[1], min(len(sources[0]), cap), min(len(sources[1]), cap),
                      label=f"{name} {phase}")


def split_source(config, train: bool) -> PairedSource | UnpairedSource:
  """The examples of the train or test split, as chosen by config.data.source and config.model.
  Folder splits are checked for bad files first (`checked`)."""
  kind = config.data.source
  if kind == "builtin":
    size = config.load_size if train else config.crop_size  # test images: already at crop_size
    split = builtin.TRAIN if train else builtin.TEST
    n = config.data.num_train if train else config.data.num_test
    n = min(n, _cap(config) or n)
    if n < 1:
      raise ValueError(f"config.data.num_{'train' if train else 'test'}={n} must be at least 1.")
    if config.model == "colorization":  # the renderings are the colour photos
      return BuiltinPhotos(builtin.BuiltinPairs(config.seed, split, size, n))
    if is_paired(config) or not train:  # the unpaired eval set is paired, so it can be scored
      return builtin.BuiltinPairs(config.seed, split, size, n)
    return builtin.BuiltinUnpaired(config.seed, split, size, n, n)
  if kind == "folder":
    if config.model == "colorization":
      return _photo_folder(config, "train" if train else "test")
    if is_paired(config):
      return _aligned_folder(config, "train" if train else "test")
    return _unaligned_folders(config, "train" if train else "test")
  if kind == "tfds":
    if is_paired(config):
      raise ValueError(
          "config.data.source='tfds' serves unpaired cycle_gan/* data only; paired (pix2pix) data comes"
          " as the official A|B folders: use config.data.source='folder' and"
          f" `{download.download_command(config.data.name, config.data.root)}`.")
    return _tfds_unpaired(config, "train" if train else "test")
  raise ValueError(f"config.data.source={kind!r} is not one of builtin, folder, tfds.")


def num_examples(source: PairedSource | UnpairedSource) -> int:
  """Examples per epoch: pairs (photos), or max(|A|, |B|) for unpaired domains (the official length)."""
  if hasattr(source, "pair") or hasattr(source, "photo"):
    return len(source)
  return max(source.len_a, source.len_b)


def first_size(source: PairedSource | UnpairedSource) -> tuple[int, int]:
  """(w, h) of the first example image (A side or domain A): the data set's reference shape."""
  if hasattr(source, "photo"):
    return source.photo(0).size
  return (source.pair(0)[0] if hasattr(source, "pair") else source.image_a(0)).size



def checked(config, lists: tuple[tuple[str, ...], ...], aligned: bool, test: bool) -> tuple[tuple[str, ...], ...]:
  """`lists` of image paths without their bad files, or BadImageError listing all of them.

  Runs when config.data.check_images or config.data.skip_bad_images is set (skipping needs the
  check), once per process and split; every process checks the whole split, so that all leave out
  the same files. Files are capped by max_dataset_size before the check, as upstream selects
  them, so skipping leaves fewer.
  """
  if not (config.data.check_images or config.data.skip_bad_images):
    return lists
  signature = tuple(images.stat_signature(p) for paths in lists for p in paths)
  bad, odd = images.bad_files(lists, aligned, Preprocess.from_config(config), test, signature)
  if odd:
    images.print_once(f"{len(odd)} aligned image file{'s have' if len(odd) > 1 else ' has'} an odd width; as upstream,"
                      " A is the left int(w / 2) columns and B the rest, one column wider (`python -m gantx combine`"
                      " writes pairs of two equal halves):\n"
                      + "\n".join(f"  {path}" for path in odd))
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
  images.print_once(f"Leaving out {len(bad)} of {total} image files (config.data.skip_bad_images):\n{listing}")
  return kept

