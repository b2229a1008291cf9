"""Tests of gantx.download on small archives built here (file:// URLs; nothing leaves the machine)."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from gantx import download as dl

REPO = pathlib.Path(__file__).resolve().parents[1]


def png_bytes(w=8, h=4) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def make_tar(path: pathlib.Path, members: dict[str, bytes]) -> str:
  with tarfile.open(path, "w:gz") as tf:
    for name, content in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tf.addfile(info, io.BytesIO(content))
  return path.as_uri()


def make_zip(path: pathlib.Path, members: dict[str, bytes]) -> str:
  with zipfile.ZipFile(path, "w") as zf:
    for name, content in members.items():
      zf.writestr(name, content)
  return path.as_uri()


PIX2PIX_MEMBERS = {f"facades/{split}/{i}.jpg": png_bytes() for split, n in (("train", 3), ("val", 2)) for i in range(n)}
CYCLEGAN_MEMBERS = {f"horse2zebra/{split}/{i}.jpg": png_bytes(4, 4)
                    for split, n in (("trainA", 2), ("trainB", 3), ("testA", 1), ("testB", 1)) for i in range(n)}


def test_pix2pix_tar_is_unpacked_and_checked(tmp_path, capsys):
  url = make_tar(tmp_path / "facades.tar.gz", PIX2PIX_MEMBERS)
  root = tmp_path / "datasets"
  target = dl.download("facades", root, url=url)
  assert target == root / "facades"
  assert len(dl.list_images(target / "train")) == 3 and len(dl.list_images(target / "val")) == 2
  assert "train 3, val 2" in capsys.readouterr().out
  assert [p.name for p in root.iterdir()] == ["facades"]  # no staging left behind
  dl.download("facades", root, url=url)  # already there: nothing is fetched
  assert "already there" in capsys.readouterr().out


def test_cyclegan_zip_through_the_cli(tmp_path):
  url = make_zip(tmp_path / "h2z.zip", CYCLEGAN_MEMBERS)
  root = tmp_path / "datasets"
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-m", "gantx.download", "horse2zebra", "--root", str(root), "--url", url],
                          env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "trainA 2, trainB 3, testA 1, testB 1" in result.stdout
  assert sorted(p.name for p in (root / "horse2zebra").iterdir()) == ["testA", "testB", "trainA", "trainB"]


def test_both_facades_layouts_share_one_folder(tmp_path):
  root = tmp_path / "datasets"
  dl.download("facades", root, url=make_tar(tmp_path / "p.tar.gz", PIX2PIX_MEMBERS))
  unaligned = {name.replace("horse2zebra", "facades"): v for name, v in CYCLEGAN_MEMBERS.items()}
  dl.download("facades", root, kind="cyclegan", url=make_zip(tmp_path / "c.zip", unaligned))
  assert sorted(p.name for p in (root / "facades").iterdir()) == ["testA", "testB", "train", "trainA", "trainB", "val"]


def test_official_urls_and_kinds():
  assert dl.archive_url("facades", dl.default_kind("facades")).endswith("/pix2pix/datasets/facades.tar.gz")
  assert dl.archive_url("facades", "cyclegan").endswith("/cyclegan/datasets/facades.zip")
  assert dl.archive_url("horse2zebra", dl.default_kind("horse2zebra")).endswith("/cyclegan/datasets/horse2zebra.zip")
  with pytest.raises(ValueError, match="prepare_cityscapes_dataset.py"):
    dl.download("cityscapes", "unused")
  with pytest.raises(ValueError, match="'horse2zebra' is a cyclegan data set, not a pix2pix one: use --kind cyclegan"):
    dl.archive_url("horse2zebra", "pix2pix")
  with pytest.raises(ValueError, match=r"Unknown data set 'mapz'\. Did you mean 'maps'\? pix2pix: facades, maps.*cyclegan: "):
    dl.download("mapz", "unused")


def test_a_failed_download_names_the_url_and_the_file_url_way(tmp_path):
  url = (tmp_path / "nowhere" / "maps.tar.gz").as_uri()
  with pytest.raises(OSError, match=r"Could not download .*nowhere/maps.tar.gz.*--url file:///path/to/maps.tar.gz"):
    dl.download("maps", tmp_path / "datasets", url=url)


@pytest.mark.parametrize("member", ["../evil.jpg", "/tmp/evil.jpg", "facades/train/../../evil.jpg"])
def test_path_traversal_is_refused(tmp_path, member):
  url = make_tar(tmp_path / "bad.tar.gz", {**PIX2PIX_MEMBERS, member: b"x"})
  root = tmp_path / "datasets"
  with pytest.raises(dl.ArchiveError, match="unsafe"):
    dl.download("facades", root, url=url)
  assert not (tmp_path / "evil.jpg").exists() and not (root / "facades").exists()
  zip_url = make_zip(tmp_path / "bad.zip", {**CYCLEGAN_MEMBERS, member: b"x"})
  with pytest.raises(dl.ArchiveError, match="unsafe"):
    dl.download("horse2zebra", root, url=zip_url)


def test_link_member_is_refused(tmp_path):
  path = tmp_path / "link.tar.gz"
  with tarfile.open(path, "w:gz") as tf:
    info = tarfile.TarInfo("facades/train/link.jpg")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tf.addfile(info)
  with pytest.raises(dl.ArchiveError, match="link"):
    dl.download("facades", tmp_path / "datasets", url=path.as_uri())


def test_archive_without_train_is_reported(tmp_path):
  url = make_tar(tmp_path / "f.tar.gz", {"facades/test/0.jpg": png_bytes()})
  root = tmp_path / "datasets"
  with pytest.raises(dl.ArchiveError, match="train/"):
    dl.download("facades", root, url=url)
  assert not (root / "facades").exists()
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-m", "gantx.download", "facades", "--root", str(root), "--url", url],
                          env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1 and "train/" in result.stderr


def test_unreachable_url_is_reported(tmp_path):
  with pytest.raises(OSError, match="Could not download"):
    dl.download("facades", tmp_path, url=(tmp_path / "missing.tar.gz").as_uri())
