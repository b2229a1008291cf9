"""Paths that may be bucket URLs: every file gantx reads or writes goes through `path()`.

A path is a local path or a URL that `etils.epath` opens: `gs://bucket/...` through gcsfs
(`pip install 'gantx[gcs]'`), `s3://bucket/...` through s3fs where it is installed. On a Cloud TPU
pod the hosts share no disk: `--workdir gs://...` puts the checkpoints (orbax writes them through
tensorstore), metrics.jsonl, config.json, params.json, samples, the HTML pages, losses.png and
the TensorBoard events in the bucket; `data.root=gs://...` reads the folder data sets from it. The
XLA compilation cache stays on the local disk.

Orbax 0.12.8 writes checkpoints to local paths and gs:// only (its s3:// paths lose a slash and
are written locally), so a work directory is local or gs://; data, models and outputs of translate
may be on either.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Iterator

from etils import epath

# scheme -> (the module its filesystem needs, the pip extra or package that installs it)
_BACKENDS = {"gs": ("gcsfs", "pip install 'gantx[gcs]'"), "s3": ("s3fs", "pip install s3fs")}
WORKDIR_SCHEMES = ("gs",)


def scheme(p: str | os.PathLike) -> str | None:
  """'gs' for 'gs://b/x', None for a local path."""
  s = os.fspath(p)
  return s.split("://", 1)[0] if "://" in s else None


def is_remote(p: str | os.PathLike) -> bool:
  return scheme(p) is not None


def path(p: str | os.PathLike) -> epath.Path:
  """`p` as an `epath.Path` (local paths with '~' expanded). ValueError naming the path for a URL
  of an unknown scheme or whose filesystem is not installed (with the command that installs it)."""
  s = os.fspath(p)
  kind = scheme(s)
  if kind is None:
    return epath.Path(os.path.expanduser(s))
  if kind not in _BACKENDS:
    raise ValueError(f"{s}: unknown URL scheme {kind}://; gantx reads local paths, gs:// and s3://.")
  module, install = _BACKENDS[kind]
  if importlib.util.find_spec(module) is None:
    raise ValueError(f"{s}: {kind}:// paths need {module}, which is not installed: {install}.")
  return epath.Path(s)


def check_bucket(p: str | os.PathLike, what: str) -> None:
  """For a URL: ValueError unless its bucket exists and these credentials can see it, naming `what`
  (e.g. '--workdir') and what to check. Nothing for a local path."""
  kind = scheme(p)
  if kind is None:
    return
  bucket = os.fspath(p).split("://", 1)[1].split("/", 1)[0]
  root = path(f"{kind}://{bucket}")
  try:
    exists = root.exists()
  except Exception as e:  # noqa: BLE001 -- credentials and transport errors of any library
    raise ValueError(f"{what} {os.fspath(p)}: cannot reach {kind}://{bucket} ({type(e).__name__}: {e}). Check the"
                     " credentials (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS)"
                     " and the network.") from e
  if not exists:
    raise ValueError(f"{what} {os.fspath(p)}: the bucket {kind}://{bucket} does not exist, or these credentials"
                     f" cannot see it. Create it (gcloud storage buckets create {kind}://{bucket}) or check the"
                     " credentials (gcloud auth application-default login).")


def check_workdir(p: str | os.PathLike) -> epath.Path:
  """A work directory: local or on a scheme orbax writes checkpoints to, in a bucket that exists."""
  kind = scheme(p)
  if kind is not None and kind not in WORKDIR_SCHEMES:
    raise ValueError(f"--workdir {os.fspath(p)}: checkpoints are written to local paths and gs:// only"
                     f" (orbax); put the work directory on gs:// or a local disk.")
  check_bucket(p, "--workdir")
  return path(p)


def append_text(file: epath.Path, text: str) -> None:
  """Appends `text` to `file`. Object stores have no append: there the file is rewritten whole."""
  if is_remote(file):
    file.write_text((file.read_text() if file.exists() else "") + text)
  else:
    with open(file, "a") as f:
      f.write(text)


def walk_files(folder: epath.Path) -> Iterator[epath.Path]:
  """Every file below `folder`, recursively (epath has no recursive glob: on a bucket it would be
  thousands of requests; walk lists each folder once)."""
  kind = scheme(folder)
  for dirpath, _, filenames in folder.walk():
    dirpath = os.fspath(dirpath)
    if kind is not None and "://" not in dirpath:  # gcsfs gives 'bucket/dir' for gs://bucket/dir
      dirpath = f"{kind}://{dirpath}"
    for name in filenames:
      yield epath.Path(dirpath) / name


def copy_tree(src: epath.Path, dst: epath.Path) -> None:
  """Copies every file below `src` to the same place below `dst` (between any two filesystems)."""
  for f in walk_files(src):
    target = dst / os.path.relpath(os.fspath(f), os.fspath(src))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(f.read_bytes())
