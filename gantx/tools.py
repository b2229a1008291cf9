"""The official data set tools: A and B images of the same scenes into the A|B files pix2pix trains on.

    python -m gantx combine --fold_A A --fold_B B --output AB    # datasets/combine_A_and_B.py upstream
    python -m gantx make_aligned --dataset_path DIR              # datasets/make_dataset_aligned.py upstream

`combine`: the splits are the sub-folders of fold_A (train/, val/, test/, ...); each image of
fold_A/<split> is paired with the file of the same name in fold_B/<split> (`use_AB`: x_A.png with
x_B.png, the layout of a folder holding both) and written as `<output>/<split>/<name>`, A on the
left, B on the right, in the format of its name (cv2.imwrite upstream: JPEG quality 95).
`make_aligned`: the i-th image of trainA/ and of trainB/ (sorted by name) become train/<i:04d>.jpg,
the same for testA/ and testB/ into test/ (PIL's JPEG defaults, quality 75, as upstream).
The result is the official 'aligned' layout (`gantx.data.sources.AlignedFolder`), which reads
each file as (left half, right half) (`gantx.data.images.split_aligned`).

Folders may be local or in a bucket (`gantx.paths`). Everything is checked before the first file
is written, every image decoded (JPEGs at 1/8 scale, as the bad-file check of training; the writing
decodes them again): file names without a partner, A and B of different sizes, unreadable files
(BadImageError) and an output split folder that already holds images are one-line errors naming
the files, so a failed run leaves no half-written data set (only an I/O error while writing can).
Upstream checks none of these: combine_A_and_B.py leaves A files without a B partner out silently,
and in its default multiprocessing mode never collects the pool's results, so a pair that fails
(unreadable file, heights that differ) is silently missing; make_dataset_aligned.py asserts equal
counts, and equal sizes pair by pair while writing, so a bad pair stops it with the earlier ones
written.

Differences from upstream, besides those checks:
- Files are listed as the training data sets list them (`list_images`): files with an image
  extension (any case, `IMG_EXTENSIONS`), recursively, sorted by path; nested files keep their
  relative path (combine pairs fold_A/<split>/x/1.png with fold_B/<split>/x/1.png). Upstream takes
  every entry of os.listdir (combine: in the directory's arbitrary order, so `num_imgs` picks any
  files; here the first ones by name) or only '.png' and '.jpg' at the top (make_aligned).
- Images are decoded as training decodes them (`gantx.data.images.decode`: PIL, 16-bit files scaled
  to 8 bits, not clipped) and combined as RGB. combine_A_and_B.py reads them with cv2, which turns
  the image by its EXIF orientation (PIL, and so training, does not), shifts 16-bit files to 8 bits
  and needs A and B of the same height only (A|B files of two widths do not split into the pair).
  Its JPEGs come from cv2's libjpeg, these from PIL's, at the same quality and 4:2:0 chroma
  subsampling: the pixels differ by the encoders' rounding.
- make_aligned writes test/ only where testA/ and testB/ exist (upstream writes an empty test/).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
from typing import Iterable

import numpy as np
from etils import epath
from PIL import Image

from gantx import paths
from gantx.data import images
from gantx.data.images import IMG_EXTENSIONS, BadImageError, decode, list_images

# cv2.imwrite's JPEG defaults (combine_A_and_B.py passes no options): quality 95, 4:2:0 chroma.
COMBINE_JPEG = {"quality": 95, "subsampling": "4:2:0"}
# make_dataset_aligned.py: PIL's save() with its defaults (quality 75, 4:2:0), names 0000.jpg, 0001.jpg, ...
ALIGNED_NAME = "{:04d}.jpg"
ALIGNED_JPEG: dict = {}
# make_dataset_aligned.py: (output split, A folder, B folder), in its order.
UNALIGNED_PAIRS = (("test", "testA", "testB"), ("train", "trainA", "trainB"))
_SHOWN = 5  # names an error lists before it counts the rest


@dataclasses.dataclass(frozen=True)
class _Pair:
  """One output file: `a` on the left, `b` on the right, encoded with `jpeg` options if JPEG."""
  a: epath.Path
  b: epath.Path
  out: epath.Path
  jpeg: dict


def combine(fold_A: str | os.PathLike, fold_B: str | os.PathLike, output: str | os.PathLike, *,
            num_imgs: int | None = None, use_AB: bool = False) -> dict[str, int]:
  """Writes `<output>/<split>/<name>` = [fold_A/<split>/<name> | fold_B/<split>/<name>] for every split
  (sub-folder) of `fold_A`; the official datasets/combine_A_and_B.py.

  Args:
    fold_A, fold_B: folders of split folders of images; fold_B/<split> holds a partner of every image
      used from fold_A/<split> (files of fold_B without one are not read).
    output: the data set folder written (local or a bucket); its split folders must hold no images yet.
    num_imgs: at most this many images per split, the first by name (None: all).
    use_AB: only fold_A's files whose names hold '_A.' are used, paired with the name with '_B.' in
      fold_B (which may be the same folder), written with '.' (0001_A.jpg + 0001_B.jpg -> 0001.jpg).
  Returns:
    {split: images written}, splits sorted by name.
  """
  if num_imgs is not None and num_imgs < 1:
    raise ValueError(f"num_imgs={num_imgs} must be at least 1 (or None for all images).")
  root_a, root_b = _folder(fold_A, "fold_A"), _folder(fold_B, "fold_B")
  paths.check_bucket(output, "output")
  out_root = paths.path(output)
  splits = sorted(next(iter(root_a.walk()))[1])
  if not splits:
    raise FileNotFoundError(f"fold_A {root_a} has no split sub-folders: put its images in {root_a}/train/,"
                            f" {root_a}/test/, ... and those of fold_B in the same sub-folders of {root_b}.")
  plan, totals = {}, {}
  for split in splits:
    dir_a, dir_b = root_a / split, root_b / split
    files_a = _images(dir_a, "fold_A")
    if use_AB:
      files_a = [p for p in files_a if "_A." in p.name]
      if not files_a:
        raise ValueError(f"fold_A split folder {dir_a} holds no image named *_A.* (use_AB pairs x_A.png with x_B.png).")
    totals[split] = len(files_a)
    files_a = files_a[:num_imgs]
    if not dir_b.is_dir():
      raise FileNotFoundError(f"fold_B split folder {dir_b} does not exist (the partner of {dir_a}).")
    names_b = {_relative(p, dir_b) for p in list_images(dir_b)}
    pairs, orphans = [], []
    for a in files_a:
      head, name = os.path.split(_relative(a, dir_a))
      name_b = os.path.join(head, name.replace("_A.", "_B.") if use_AB else name)
      if name_b not in names_b:
        orphans.append(os.path.join(head, name))
        continue
      name_ab = name.replace("_A.", ".") if use_AB else name
      pairs.append(_Pair(a, dir_b / name_b, out_root / split / head / name_ab, COMBINE_JPEG))
    if orphans:
      partner = "named *_B.*" if use_AB else "of the same name"
      raise ValueError(f"{len(orphans)} of {len(files_a)} images of {dir_a} have no partner {partner} in {dir_b}:"
                       f" {_names(orphans)}.")
    plan[split] = pairs
  _write(plan, out_root)
  for split, pairs in plan.items():
    print(f"{out_root / split}: {len(pairs)}/{totals[split]} A|B images of {root_a / split}.", flush=True)
  return {split: len(pairs) for split, pairs in plan.items()}


def make_aligned(dataset_path: str | os.PathLike) -> dict[str, int]:
  """Writes `<dataset_path>/train/<i:04d>.jpg` = [i-th image of trainA/ | i-th image of trainB/] (sorted
  by path), and test/ from testA/ and testB/ where they exist; the official datasets/make_dataset_aligned.py.

  A and B are paired by position, not by name: both folders of a split must hold as many images.
  Returns:
    {split: images written}: 'test' (if testA/ and testB/ exist), then 'train', upstream's order.
  """
  root = _folder(dataset_path, "dataset_path")
  plan = {}
  for split, name_a, name_b in UNALIGNED_PAIRS:
    dir_a, dir_b = root / name_a, root / name_b
    present = dir_a.is_dir(), dir_b.is_dir()
    if split == "test" and not any(present):
      continue
    for folder, there in zip((dir_a, dir_b), present):
      if not there:
        raise FileNotFoundError(f"dataset_path folder {folder} does not exist: make_aligned pairs the images of"
                                f" {name_a}/ and {name_b}/ into {split}/ (and testA/ with testB/ into test/).")
    files_a, files_b = _images(dir_a, "dataset_path"), _images(dir_b, "dataset_path")
    if len(files_a) != len(files_b):
      longer, files = (dir_a, files_a) if len(files_a) > len(files_b) else (dir_b, files_b)
      extra = [_relative(p, longer) for p in files[min(len(files_a), len(files_b)):]]
      raise ValueError(f"{dir_a} holds {len(files_a)} images and {dir_b} {len(files_b)}: make_aligned pairs the i-th"
                       f" file of each (sorted by name), so they must be as many; without a partner in {longer}:"
                       f" {_names(extra)}.")
    plan[split] = [_Pair(a, b, root / split / ALIGNED_NAME.format(i), ALIGNED_JPEG)
                   for i, (a, b) in enumerate(zip(files_a, files_b))]
  _write(plan, root)
  for split, pairs in plan.items():
    print(f"{root / split}: {len(pairs)} A|B images of {root / (split + 'A')} and {root / (split + 'B')}.", flush=True)
  return {split: len(pairs) for split, pairs in plan.items()}


# ---------------------------------------------------------------------------------------------
# Checks, then writing.
# ---------------------------------------------------------------------------------------------


def _folder(p: str | os.PathLike, what: str) -> epath.Path:
  """`p` as a path; FileNotFoundError naming `what` (e.g. 'fold_A') unless it is a folder."""
  paths.check_bucket(p, what)
  folder = paths.path(p)
  if not folder.is_dir():
    raise FileNotFoundError(f"{what} {os.fspath(p)}: no such folder.")
  return folder


def _images(folder: epath.Path, what: str) -> list[epath.Path]:
  """`list_images(folder)`; ValueError naming the folder if it holds none."""
  found = list_images(folder)
  if not found:
    raise ValueError(f"{what} folder {folder} holds no image files ({', '.join(IMG_EXTENSIONS)}).")
  return found


def _relative(p: os.PathLike, folder: os.PathLike) -> str:
  """`p`'s path below `folder` (local or URL; both strings start alike)."""
  return os.path.relpath(os.fspath(p), os.fspath(folder))


def _names(items: Iterable[object]) -> str:
  """'a, b, c', or 'a, b, c, d, e and 7 more'."""
  items = [str(i) for i in items]
  shown = ", ".join(items[:_SHOWN])
  return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"


def _size(path: epath.Path) -> tuple[int, int] | BadImageError:
  """The (w, h) of an image file that decodes (JPEGs at 1/8 scale), else its BadImageError."""
  try:
    return images._decode_sized(path, reduced=True)[1]  # pylint: disable=protected-access
  except BadImageError as e:
    return e


def _check(plan: dict[str, list[_Pair]], out_root: epath.Path) -> None:
  """Everything that can fail before the first file is written: output split folders that already hold
  images (the A|B files would mix with them; with output = fold_A they are the inputs), files that
  do not decode, pairs of two sizes."""
  for split in plan:
    folder = out_root / split
    if folder.is_dir() and (found := list_images(folder)):
      raise ValueError(f"Output folder {folder} already holds {_count(len(found), 'image file')} ({_names(found)}):"
                       " the A|B images would mix with them. Remove it, or write to another folder.")
  pairs = [pair for split_pairs in plan.values() for pair in split_pairs]
  files = [f for pair in pairs for f in (pair.a, pair.b)]
  with concurrent.futures.ThreadPoolExecutor() as pool:  # PIL releases the GIL while decoding
    sizes = list(pool.map(_size, files))
  bad = [(f, e) for f, e in zip(files, sizes) if isinstance(e, BadImageError)]
  if bad:
    more = f" (and {_count(len(bad) - 1, 'more unreadable file')}: {_names(f for f, _ in bad[1:])})" if bad[1:] else ""
    raise BadImageError(_one_line(f"{bad[0][1]}{more}"))
  differ = [(pair, sizes[2 * i], sizes[2 * i + 1]) for i, pair in enumerate(pairs) if sizes[2 * i] != sizes[2 * i + 1]]
  if differ:
    pair, (wa, ha), (wb, hb) = differ[0]
    others = _names(p.a for p, _, _ in differ[1:])
    more = f" (and {_count(len(differ) - 1, 'more pair')} of two sizes: {others})" if differ[1:] else ""
    raise ValueError(f"{pair.a} is {wa}x{ha} but its B partner {pair.b} is {wb}x{hb} (width x height): A and B must"
                     f" be the same size to make an A|B pair{more}.")


def _write(plan: dict[str, list[_Pair]], out_root: epath.Path) -> None:
  """Checks everything (`_check`), then writes every pair, in threads."""
  _check(plan, out_root)
  pairs = [pair for split_pairs in plan.values() for pair in split_pairs]
  for folder in sorted({os.fspath(pair.out.parent) for pair in pairs}):
    paths.path(folder).mkdir(parents=True, exist_ok=True)
  with concurrent.futures.ThreadPoolExecutor() as pool:
    list(pool.map(_write_pair, pairs))


def _write_pair(pair: _Pair) -> None:
  """Decodes A and B as training does, as RGB (as upstream: cv2's IMREAD_COLOR, PIL's paste into an
  RGB image), and writes [A | B] in the format of the output's extension."""
  a, b = (np.asarray(decode(p).convert("RGB")) for p in (pair.a, pair.b))
  image = Image.fromarray(np.concatenate([a, b], axis=1))
  pair.out.write_bytes(_encode(image, pair.out.suffix, pair.jpeg))


def _encode(image: Image.Image, suffix: str, jpeg: dict | None = None) -> bytes:
  """`image` as the bytes of a file named *`suffix` (e.g. '.jpg', '.png'); `jpeg`: PIL's JPEG options."""
  fmt = Image.registered_extensions().get(suffix.lower())
  if fmt is None:
    raise ValueError(f"Cannot write an image file with extension {suffix!r}: PIL knows no such format.")
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **((jpeg or {}) if fmt == "JPEG" else {}))
  return buffer.getvalue()


def _count(n: int, noun: str) -> str:
  return f"{n} {noun}{'' if n == 1 else 's'}"


def _one_line(message: str) -> str:
  return " ".join(message.splitlines())

