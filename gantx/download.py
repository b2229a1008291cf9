"""Fetches the official pix2pix / CycleGAN data sets into `<root>/<name>/` and checks their layout.

    python -m gantx.download facades --root ./datasets     # pix2pix: train/ val/ test/ of A|B images
    python -m gantx.download horse2zebra                    # CycleGAN: trainA/ trainB/ testA/ testB/
    python -m gantx.download facades --kind cyclegan        # the unpaired facades, beside the paired one

'facades' and 'maps' exist as both a pix2pix archive (aligned A|B images) and a CycleGAN archive
(unaligned folders); `--kind` picks one (pix2pix by default). The two layouts use different
sub-folder names, so both can live in the same `<root>/<name>/` folder. Archives are checked
before anything is unpacked: absolute paths, '..' and links are refused. `--url` replaces the
official address (a mirror, or a file:// archive). Image files are listed as the training data
sets list them (`gantx.data.images`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import pathlib
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

from gantx import paths
from gantx.data.images import IMG_EXTENSIONS, list_images

KINDS = ("pix2pix", "cyclegan")
ALIGNED_SPLITS = ("train", "val", "test")
UNALIGNED_SPLITS = ("trainA", "trainB", "testA", "testB")

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
PIX2PIX_DATASETS = ("facades", "maps", "edges2shoes", "edges2handbags", "night2day")
CYCLEGAN_DATASETS = (
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
    "ukiyoe2photo", "vangogh2photo", "maps", "facades", "iphone2dslr_flower", "ae_photos",
    # Upstream's small test sets (scripts/test_before_push.py).
    "mini", "mini_pix2pix")
# Layout of each archive: 'aligned' (train/ of A|B images), 'unaligned' (trainA/ trainB/ ...) or
# 'images' (a plain folder of photos, for testing a trained generator).
_CYCLEGAN_LAYOUT = {"ae_photos": "images", "mini_pix2pix": "aligned"}

CITYSCAPES_HELP = (
    "cityscapes is not distributed by upstream (its licence forbids it). Download gtFine_trainvaltest.zip"
    " and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com, then run"
    " datasets/prepare_cityscapes_dataset.py of junyanz/pytorch-CycleGAN-and-pix2pix to build the"
    " aligned train/ and test/ folders under <root>/cityscapes/.")


class ArchiveError(ValueError):
  """An archive that is unsafe to unpack or does not hold the expected folders."""


def default_kind(name: str) -> str:
  """'pix2pix' for the pix2pix archives (facades and maps included), else 'cyclegan'."""
  return "pix2pix" if name in PIX2PIX_DATASETS else "cyclegan"


def download_command(name: str, root: os.PathLike | str, kind: str | None = None) -> str:
  """The shell command that fetches data set `name`; `--kind` only where the name is ambiguous."""
  command = f"python -m gantx.download {name} --root {root}"
  if kind is not None and name in PIX2PIX_DATASETS and name in CYCLEGAN_DATASETS and kind != default_kind(name):
    command += f" --kind {kind}"
  return command


def archive_url(name: str, kind: str) -> str:
  """The official address of data set `name` of `kind`; ValueError for names upstream does not serve."""
  if name == "cityscapes":
    raise ValueError(CITYSCAPES_HELP)
  if kind == "pix2pix" and name in PIX2PIX_DATASETS:
    return PIX2PIX_URL.format(name=name)
  if kind == "cyclegan" and name in CYCLEGAN_DATASETS:
    return CYCLEGAN_URL.format(name=name)
  known = f"pix2pix: {', '.join(PIX2PIX_DATASETS)}. cyclegan: {', '.join(CYCLEGAN_DATASETS)}."
  if name in PIX2PIX_DATASETS + CYCLEGAN_DATASETS:
    right_kind = "pix2pix" if name in PIX2PIX_DATASETS else "cyclegan"
    raise ValueError(f"{name!r} is a {right_kind} data set, not a {kind} one: use --kind {right_kind}"
                     f" (or leave --kind out). {known}")
  close = difflib.get_close_matches(name, PIX2PIX_DATASETS + CYCLEGAN_DATASETS, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  raise ValueError(f"Unknown data set {name!r}.{hint} {known} Use --url for any other archive.")


def expected_layout(name: str, kind: str | None) -> str | None:
  """'aligned', 'unaligned', 'images', or None (unknown: decided from what the archive holds)."""
  if kind == "pix2pix":
    return "aligned"
  if kind == "cyclegan":
    return _CYCLEGAN_LAYOUT.get(name, "unaligned")
  return None


def check_layout(folder: pathlib.Path, layout: str | None) -> dict[str, int]:
  """Counts the images of each split folder; raises ArchiveError naming what is missing.

  Args:
    folder: the data set folder, e.g. `datasets/facades`.
    layout: as `expected_layout`; None accepts either the aligned or the unaligned layout.
  Returns:
    {split folder name: number of images}, e.g. {'train': 400, 'val': 100, 'test': 106}.
  """
  if layout is None:
    layout = "unaligned" if (folder / "trainA").is_dir() else "aligned"
  if layout == "images":
    counts = {".": len(list_images(folder))}
    required = (".",)
  else:
    splits = ALIGNED_SPLITS if layout == "aligned" else UNALIGNED_SPLITS
    counts = {s: len(list_images(folder / s)) for s in splits if (folder / s).is_dir()}
    required = ("train",) if layout == "aligned" else ("trainA", "trainB")
  for split in required:
    if not counts.get(split):
      present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
      what = "folder" if split not in counts else "images in folder"
      raise ArchiveError(
          f"The {layout} data set {folder} has no {what} {split}/ (it holds: {present or 'nothing'})."
          f" Expected {'/, '.join(required)}/ with {', '.join(IMG_EXTENSIONS)} images.")
  return counts


def _member_problem(name: str, is_dir: bool, is_file: bool) -> str | None:
  """Why an archive member must not be unpacked, or None if it is a safe file or folder."""
  parts = pathlib.PurePosixPath(name.replace("\\", "/")).parts
  if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")):
    return "absolute path"
  if ".." in parts:
    return "'..' in its path"
  if not (is_dir or is_file):
    return "a link or special file"
  return None


def _unpack(archive: pathlib.Path, dest: pathlib.Path, source: str) -> None:
  """Unpacks a .tar(.gz) or .zip archive into `dest` after checking every member is safe."""
  if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as zf:
      for info in zf.infolist():
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        _refuse(info.filename, _member_problem(info.filename, info.is_dir(), not is_link), source)
      zf.extractall(dest)
  elif tarfile.is_tarfile(archive):
    with tarfile.open(archive) as tf:
      for member in tf.getmembers():
        _refuse(member.name, _member_problem(member.name, member.isdir(), member.isfile()), source)
      tf.extractall(dest, filter="data")
  else:
    raise ArchiveError(f"{source} is neither a .tar.gz nor a .zip archive.")


def _refuse(member: str, problem: str | None, source: str) -> None:
  if problem is not None:
    raise ArchiveError(f"Refusing to unpack {source}: member {member!r} is unsafe ({problem}).")


def _content_root(unpacked: pathlib.Path) -> pathlib.Path:
  """The folder holding the splits: archives usually wrap them in one top folder `<name>/`."""
  entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
  split_names = set(ALIGNED_SPLITS + UNALIGNED_SPLITS)
  if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in split_names:
    return entries[0]
  return unpacked


def _fetch(url: str, dest: pathlib.Path) -> None:
  """Copies `url` (http(s) or file://) to `dest`, reporting the size."""
  print(f"Downloading {url}", flush=True)
  try:
    with urllib.request.urlopen(url) as response, open(dest, "wb") as out:
      shutil.copyfileobj(response, out, length=1 << 20)
  except OSError as e:  # URLError is an OSError
    raise OSError(f"Could not download {url}: {e}. If you have the archive (fetched another way), give it"
                  f" with --url file:///path/to/{pathlib.PurePosixPath(url).name}.") from e
  print(f"  {dest.stat().st_size / 2**20:.1f} MiB", flush=True)


def _describe(counts: dict[str, int]) -> str:
  return ", ".join(f"{split} {n}" for split, n in counts.items())


def download(name: str, root: os.PathLike | str = "./datasets", kind: str | None = None,
             url: str | None = None) -> pathlib.Path:
  """Fetches data set `name` into `<root>/<name>/`, unpacks it safely and checks its folders.

  Nothing is fetched when the folders are already there. Both layouts of 'facades' and 'maps'
  can share `<root>/<name>/` (train/ val/ test/ beside trainA/ trainB/ testA/ testB/).

  Args:
    name: an official data set name (see PIX2PIX_DATASETS, CYCLEGAN_DATASETS) or, with `url`, any name.
    root: the folder holding data sets (config.data.root).
    kind: 'pix2pix' or 'cyclegan'; defaults to pix2pix for the pix2pix names, else cyclegan.
      With `url` and an unknown name, None accepts whichever layout the archive has.
    url: replaces the official address (http(s):// or file://).
  Returns:
    The data set folder `<root>/<name>`.
  """
  if kind is not None and kind not in KINDS:
    raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}.")
  if url is None:
    kind = kind or default_kind(name)
    url = archive_url(name, kind)
  elif kind is None and (name in PIX2PIX_DATASETS or name in CYCLEGAN_DATASETS):
    kind = default_kind(name)
  layout = expected_layout(name, kind)
  paths.check_bucket(root, "--root")
  remote = paths.is_remote(root)
  root = paths.path(root)
  target = root / name
  try:
    counts = check_layout(target, layout)
    print(f"{target} is already there ({_describe(counts)} images); nothing to download.")
    return target
  except (ArchiveError, OSError):
    pass
  root.mkdir(parents=True, exist_ok=True)
  # Unpacked beside the target (a rename moves it in), or on the local disk for a bucket (copied up).
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=None if remote else root))
  try:
    archive = staging / "archive"
    _fetch(url, archive)
    unpacked = staging / "unpacked"
    _unpack(archive, unpacked, source=url)
    content = _content_root(unpacked)
    counts = check_layout(content, layout)
    _move_into(content, target)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  print(f"{target}: {_describe(counts)} images.")
  return target


def _move_into(content: pathlib.Path, target) -> None:
  """Moves every entry of `content` into `target` (copies it, into a bucket), refusing to overwrite
  what is there."""
  entries = [p for p in content.iterdir() if p.name != "__MACOSX"]
  clashes = [str(target / p.name) for p in entries if (target / p.name).exists()]
  if clashes:
    raise FileExistsError(f"Not overwriting {', '.join(clashes)}: remove it to download again.")
  target.mkdir(parents=True, exist_ok=True)
  for p in entries:
    if not paths.is_remote(target):
      shutil.move(str(p), str(target / p.name))
    elif p.is_dir():
      paths.copy_tree(paths.path(p), target / p.name)
    else:
      (target / p.name).write_bytes(p.read_bytes())


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m gantx.download", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help="data set name, e.g. facades, maps, edges2shoes, horse2zebra")
  parser.add_argument("--root", default="./datasets", help="folder holding data sets (config.data.root)")
  parser.add_argument("--kind", choices=KINDS, default=None,
                      help="pix2pix (aligned A|B) or cyclegan (unaligned); matters for facades and maps")
  parser.add_argument("--url", default=None, help="fetch this archive instead (http(s):// or file://)")
  args = parser.parse_args(argv)
  try:
    download(args.name, args.root, kind=args.kind, url=args.url)
  except (ValueError, OSError) as e:
    print(f"gantx.download: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
