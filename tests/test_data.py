"""Tests of gantx.data: built-in, folder and tfds sources, preprocessing, resume and sharding."""

from __future__ import annotations

import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gantx import config as config_lib
from gantx import data
from gantx.data import builtin, images, preprocess, sources


def small_config(**overrides):
  """A tiny built-in pix2pix config: 24 px generated, 16 px crops, batch 2."""
  c = config_lib.base_config()
  c.load_size, c.crop_size, c.batch_size = 24, 16, 2
  c.data.num_train, c.data.num_test = 6, 3
  c.num_eval_images = 3
  for key, value in overrides.items():
    target = c.data if key.startswith("data_") else c
    setattr(target, key.removeprefix("data_"), value)
  return c


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def batches_differ(xs, ys):
  return any(not np.array_equal(x[k], y[k]) for x, y in zip(xs, ys) for k in x)


def write(path: pathlib.Path, array: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def uniform(h, w, value):
  return np.full((h, w, 3), value, np.uint8)


# --- built-in data ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_builtin_batches_shapes_and_determinism(model):
  c = small_config(model=model)
  first = take(data.make_train_iterator(c), 3)
  for batch in first:
    assert set(batch) == {"A", "B"}
    for k in "AB":
      assert batch[k].shape == (2, 16, 16, 3) and batch[k].dtype == np.float32
      assert -1.0 <= batch[k].min() and batch[k].max() <= 1.0
  assert_batches_equal(first, take(data.make_train_iterator(c), 3))
  assert batches_differ(first, take(data.make_train_iterator(small_config(model=model, seed=1)), 3))


def test_builtin_sizes():
  assert data.train_size(small_config()) == 6
  assert data.train_size(small_config(model="cycle_gan")) == 6
  assert data.train_size(small_config(max_dataset_size=4)) == 4


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_builtin_eval_set_is_render_of_labels(model):
  c = small_config(model=model)
  ev = data.make_eval_set(c)
  assert ev["A"].shape == (3, 16, 16, 3) and ev["B"].shape == (3, 16, 16, 3)
  assert ev["A"].dtype == np.float32 and ev["aligned"] == np.bool_(True)
  for a, b in zip(images.to_uint8(ev["A"]), images.to_uint8(ev["B"])):
    np.testing.assert_array_equal(builtin.render(a), b)
  again = data.make_eval_set(c)
  np.testing.assert_array_equal(ev["A"], again["A"])
  swapped = data.make_eval_set(small_config(model=model, direction="BtoA"))
  np.testing.assert_array_equal(swapped["A"], ev["B"])
  np.testing.assert_array_equal(swapped["B"], ev["A"])


def test_builtin_train_pairs_follow_render_and_splits_differ():
  train = builtin.BuiltinPairs(seed=0, split=0, size=32, length=4)
  test = builtin.BuiltinPairs(seed=0, split=1, size=32, length=4)
  labels, photo = (np.asarray(x) for x in train.pair(0))
  assert set(map(tuple, labels.reshape(-1, 3))) <= set(map(tuple, builtin.LABEL_PALETTE))
  np.testing.assert_array_equal(builtin.render(labels), photo)
  assert not np.array_equal(labels, np.asarray(test.pair(0)[0]))
  # Unpaired domains are drawn from other label maps than the pairs and each other.
  unpaired = builtin.BuiltinUnpaired(seed=0, split=0, size=32, len_a=4, len_b=4)
  a0, b0 = np.asarray(unpaired.image_a(0)), np.asarray(unpaired.image_b(0))
  assert not np.array_equal(builtin.render(a0), b0)


def test_builtin_train_batches_follow_render_without_crop():
  batch = next(data.make_train_iterator(small_config(load_size=16)))  # flips on: render commutes with them
  for a, b in zip(images.to_uint8(batch["A"]), images.to_uint8(batch["B"])):
    np.testing.assert_array_equal(builtin.render(a), b)


def test_render_is_flip_equivariant():
  labels = builtin.label_map(np.random.default_rng(3), 40)
  np.testing.assert_array_equal(builtin.render(labels[:, ::-1]), builtin.render(labels)[:, ::-1])


# --- resume and sharding ---------------------------------------------------------------------


def test_resume_from_state_gives_the_same_batches():
  c = small_config(data_num_train=5)  # 5 examples, batch 2: crosses epoch boundaries
  it = data.make_train_iterator(c)
  take(it, 3)
  state = it.get_state()
  expected = take(it, 4)
  resumed = data.make_train_iterator(c)
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 4), expected)


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_process_shards_concatenate_to_the_global_batch(model):
  c = small_config(model=model, batch_size=4)
  whole = take(data.make_train_iterator(c), 3)
  parts = [take(data.make_train_iterator(c, process_index=p, process_count=2), 3) for p in (0, 1)]
  for k in range(3):
    for key in "AB":
      assert parts[0][k][key].shape[0] == 2
      np.testing.assert_array_equal(np.concatenate([parts[0][k][key], parts[1][k][key]]), whole[k][key])


def test_batch_size_must_divide_over_processes():
  with pytest.raises(ValueError, match="config.batch_size=3"):
    data.make_train_iterator(small_config(batch_size=3), process_index=0, process_count=2)


def test_serial_batches_keep_file_order(tmp_path):
  for i in range(4):
    write(tmp_path / "d" / "train" / f"{i}.png", uniform(8, 16, 10 * i))
  c = small_config(data_source="folder", data_root=str(tmp_path), data_name="d", load_size=8, crop_size=8,
                   batch_size=1, serial_batches=True, no_flip=True)
  ids = [int(round((b["A"][0, 0, 0, 0] + 1) * 127.5)) // 10 for b in take(data.make_train_iterator(c), 6)]
  assert ids == [0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("processes", [2, 4])
def test_shuffled_epochs_and_disjoint_complete_process_shards(tmp_path, processes):
  for i in range(8):
    write(tmp_path / "d" / "train" / f"{i}.png", uniform(8, 16, 10 * i))
  c = small_config(data_source="folder", data_root=str(tmp_path), data_name="d", load_size=8, crop_size=8,
                   batch_size=4, no_flip=True)

  def ids(batch):
    return [int(round((v + 1) * 127.5)) // 10 for v in batch["A"][:, 0, 0, 0]]

  shards = [take(data.make_train_iterator(c, process_index=p, process_count=processes), 4) for p in range(processes)]
  # Global batch k is the processes' k-th batches in process order; an epoch is 2 global batches.
  stream = [ids(shards[p][k]) for k in range(4) for p in range(processes)]
  epochs = [sum(stream[: len(stream) // 2], []), sum(stream[len(stream) // 2:], [])]
  for epoch in epochs:  # each epoch is a permutation split over the processes: disjoint and complete
    assert sorted(epoch) == list(range(8))
  assert epochs[0] != epochs[1] and epochs[0] != list(range(8))  # reshuffled every epoch
  single = [ids(b) for b in take(data.make_train_iterator(c), 4)]
  assert sum(single, []) == sum(epochs, [])  # the same global stream as one process


# --- folder sources --------------------------------------------------------------------------


def aligned_dataset(root: pathlib.Path, n=3, h=12, w=12) -> None:
  """n A|B images: A is a uniform (10 i), B a uniform (200 - 10 i); w is the width of one half."""
  for i in range(n):
    write(root / "facades" / "train" / f"{i}.jpg", np.concatenate([uniform(h, w, 10 * i), uniform(h, w, 200 - 10 * i)], 1))


def folder_config(tmp_path, **overrides):
  return small_config(data_source="folder", data_root=str(tmp_path), data_name="facades", **overrides)


def test_aligned_folder_split_direction_and_size(tmp_path):
  aligned_dataset(tmp_path)
  c = folder_config(tmp_path, load_size=12, crop_size=8, batch_size=3, serial_batches=True)
  assert data.train_size(c) == 3
  batch = next(data.make_train_iterator(c))
  assert batch["A"].shape == (3, 8, 8, 3) and batch["B"].shape == (3, 8, 8, 3)
  a = images.to_uint8(batch["A"]).astype(int)
  b = images.to_uint8(batch["B"]).astype(int)
  np.testing.assert_allclose(a[:, 4, 4, 0], [0, 10, 20], atol=3)  # JPEG: nearly exact
  np.testing.assert_allclose(b[:, 4, 4, 0], [200, 190, 180], atol=3)
  swapped = next(data.make_train_iterator(folder_config(tmp_path, load_size=12, crop_size=8, batch_size=3,
                                                        serial_batches=True, direction="BtoA")))
  np.testing.assert_array_equal(swapped["A"], batch["B"])
  np.testing.assert_array_equal(swapped["B"], batch["A"])


def test_aligned_pairs_share_crop_and_flip(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(2):
    half = rng.integers(0, 256, (20, 20, 3))
    write(tmp_path / "facades" / "train" / f"{i}.png", np.concatenate([half, half], 1))
  c = folder_config(tmp_path, load_size=20, crop_size=12, batch_size=2)
  batches = take(data.make_train_iterator(c), 6)
  for batch in batches:
    assert batch["A"].shape == (2, 12, 12, 3)
    np.testing.assert_array_equal(batch["A"], batch["B"])
  crops = {batch["A"][0].tobytes() for batch in batches} | {batch["A"][1].tobytes() for batch in batches}
  assert len(crops) > 2  # the crops and flips do vary


def test_grayscale_channels(tmp_path):
  aligned_dataset(tmp_path)
  batch = next(data.make_train_iterator(folder_config(tmp_path, load_size=12, crop_size=8, input_nc=1)))
  assert batch["A"].shape == (2, 8, 8, 1) and batch["B"].shape == (2, 8, 8, 3)


def test_aligned_eval_set_uses_test_then_val(tmp_path):
  aligned_dataset(tmp_path)
  val = tmp_path / "facades" / "val"
  write(val / "v.png", np.concatenate([uniform(12, 12, 50), uniform(12, 12, 150)], 1))
  ev = data.make_eval_set(folder_config(tmp_path, crop_size=8, num_eval_images=5))
  assert ev["A"].shape == (1, 8, 8, 3) and ev["aligned"] == np.bool_(True)
  np.testing.assert_array_equal(images.to_uint8(ev["A"])[0, 0, 0], [50, 50, 50])
  write(tmp_path / "facades" / "test" / "t.png", np.concatenate([uniform(12, 12, 60), uniform(12, 12, 160)], 1))
  ev = data.make_eval_set(folder_config(tmp_path, crop_size=8))
  np.testing.assert_array_equal(images.to_uint8(ev["B"])[0, 0, 0], [160, 160, 160])


def unaligned_dataset(root: pathlib.Path, n_a=3, n_b=5) -> None:
  for phase in ("train", "test"):
    for i in range(n_a):
      write(root / "h2z" / f"{phase}A" / f"a{i}.png", uniform(8, 8, 10 * i))
    for i in range(n_b):
      write(root / "h2z" / f"{phase}B" / f"b{i}.png", uniform(8, 8, 100 + 10 * i))


def unaligned_config(tmp_path, **overrides):
  return small_config(model="cycle_gan", data_source="folder", data_root=str(tmp_path), data_name="h2z",
                      load_size=8, crop_size=8, batch_size=1, **overrides)


def values(batches, key):
  return [int(images.to_uint8(b[key])[0, 0, 0, 0]) for b in batches]


def test_unaligned_folder_length_and_serial_order(tmp_path):
  unaligned_dataset(tmp_path)
  c = unaligned_config(tmp_path, serial_batches=True)
  assert data.train_size(c) == 5
  batches = take(data.make_train_iterator(c), 7)
  assert values(batches, "A") == [0, 10, 20, 0, 10, 0, 10]  # i mod |A| within each epoch of 5
  assert values(batches, "B") == [100, 110, 120, 130, 140, 100, 110]
  ev = data.make_eval_set(unaligned_config(tmp_path, num_eval_images=4))
  assert ev["aligned"] == np.bool_(False) and ev["A"].shape == (4, 8, 8, 3)
  assert values([{"A": a[None]} for a in ev["A"]], "A") == [0, 10, 20, 0]


def test_unaligned_random_b_and_direction(tmp_path):
  unaligned_dataset(tmp_path)
  batches = take(data.make_train_iterator(unaligned_config(tmp_path)), 10)
  assert set(values(batches, "A")) <= {0, 10, 20}
  b_values = values(batches, "B")
  assert set(b_values) <= {100, 110, 120, 130, 140} and len(set(b_values)) > 1
  swapped = take(data.make_train_iterator(unaligned_config(tmp_path, direction="BtoA")), 10)
  assert values(swapped, "B") == values(batches, "A") and values(swapped, "A") == b_values


# --- tfds --------------------------------------------------------------------------------------


def test_tfds_source_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  c = small_config(model="cycle_gan", data_source="tfds", data_name="horse2zebra", data_root=str(tmp_path))
  with tfds.testing.mock_data(num_examples=5):
    assert data.train_size(c) == 5
    batch = next(data.make_train_iterator(c))
    ev = data.make_eval_set(c)
  assert batch["A"].shape == (2, 16, 16, 3) and batch["A"].dtype == np.float32
  assert ev["A"].shape == (3, 16, 16, 3) and ev["aligned"] == np.bool_(False)
  with pytest.raises(ValueError, match="folder"):
    data.make_train_iterator(small_config(data_source="tfds"))


def test_tfds_missing_data_is_reported(tmp_path):
  c = small_config(model="cycle_gan", data_source="tfds", data_name="horse2zebra", data_root=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="cycle_gan/horse2zebra"):
    data.train_size(c)


# --- multiprocess loading ------------------------------------------------------------------------


def test_worker_processes_give_the_same_batches():
  c = small_config(data_num_train=5)
  expected = take(data.make_train_iterator(c), 3)
  c.data.num_workers = 1
  it = data.make_train_iterator(c)
  try:
    assert_batches_equal(take(it, 3), expected)
  finally:
    it.close()


# --- errors ----------------------------------------------------------------------------------


def test_missing_directory_names_path_and_download_command(tmp_path):
  c = folder_config(tmp_path)
  with pytest.raises(FileNotFoundError) as e:
    data.make_train_iterator(c)
  assert str(tmp_path / "facades") in str(e.value)
  assert f"python -m gantx.download facades --root {tmp_path}" in str(e.value)
  with pytest.raises(FileNotFoundError, match="gantx.download"):
    data.make_eval_set(c)


def test_corrupt_image_names_the_file(tmp_path):
  aligned_dataset(tmp_path, n=1)
  (tmp_path / "facades" / "train" / "x.jpg").write_bytes(b"this is not a jpeg")
  with pytest.raises(data.BadImageError, match="x.jpg"):
    data.make_train_iterator(folder_config(tmp_path, batch_size=1, serial_batches=True))
  it = data.make_train_iterator(folder_config(tmp_path, batch_size=1, serial_batches=True, data_check_images=False))
  with pytest.raises(data.BadImageError, match="x.jpg"):
    take(it, 2)


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "scale_width", "none"])
def test_odd_width_aligned_images_train_as_upstream_with_one_warning(tmp_path, capsys, preprocess):
  """Upstream splits an A|B file at int(w / 2): A the left 12 columns of a 25-wide file, B the other
  13. gantx trains on it too, names it once, and keeps refusing what upstream cannot read."""
  aligned_dataset(tmp_path, n=2)
  ab = np.concatenate([uniform(12, 12, 50), uniform(12, 13, 150)], 1)
  write(tmp_path / "facades" / "train" / "odd.png", ab)
  images.print_once.cache_clear()
  c = folder_config(tmp_path, batch_size=1, serial_batches=True, preprocess=preprocess, load_size=12, crop_size=8,
                    no_flip=True)
  if preprocess in ("scale_width", "none"):
    c.netG = "resnet_6blocks"  # sizes rounded to multiples of 4, not of a U-Net's 256
  assert data.train_size(c) == 3
  out = capsys.readouterr().out
  assert "1 aligned image file has an odd width" in out and out.count("odd.png") == 1
  batches = take(data.make_train_iterator(c), 3)
  odd = batches[2]  # sorted: 0.jpg, 1.jpg, odd.png
  assert odd["A"].shape == odd["B"].shape == batches[0]["A"].shape
  assert abs(float(odd["A"].mean()) - (50 / 127.5 - 1)) < 0.02 and abs(float(odd["B"].mean()) - (150 / 127.5 - 1)) < 0.02
  truncated(tmp_path / "facades" / "train" / "cut.png")
  with pytest.raises(data.BadImageError, match="cut.png"):
    data.train_size(c)


def test_empty_folders_are_named(tmp_path):
  unaligned_dataset(tmp_path, n_b=0)
  (tmp_path / "h2z" / "trainB").mkdir()
  with pytest.raises(FileNotFoundError, match="trainB"):
    data.make_train_iterator(unaligned_config(tmp_path))
  (tmp_path / "facades" / "train").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="No images .* in folder .*train"):
    data.train_size(folder_config(tmp_path))


# --- preprocessing modes -----------------------------------------------------------------------

HALF_H, HALF_W = 20, 24  # one side of the coordinate pairs below


def coordinate_pair() -> np.ndarray:
  """An A|B image whose pixels tell where they come from: R = 10 x, G = 10 y (x, y within the side),
  B = 0 on the A side and 255 on the B side. (HALF_H, 2 HALF_W, 3) uint8."""
  y, x = np.mgrid[:HALF_H, :HALF_W]
  half = np.stack([10 * x, 10 * y, np.zeros_like(x)], -1)
  return np.concatenate([half, half + [0, 0, 255]], 1).astype(np.uint8)


def coordinate_config(tmp_path, **overrides):
  """A data set of one coordinate pair (train/ and test/), resnet (sizes rounded to multiples of 4)."""
  for split in ("train", "test"):
    path = tmp_path / "facades" / split / "0.png"
    if not path.exists():
      write(path, coordinate_pair())
  fields = dict(netG="resnet_6blocks", load_size=16, crop_size=8, batch_size=1, num_eval_images=1)
  return folder_config(tmp_path, **{**fields, **overrides})


# (preprocess, crop_width) -> (train (H, W), test (H, W)) for 24x20 sides, load 16, crop 8 (x 12), multiple 4.
MODE_SHAPES = {
    ("resize_and_crop", 0): ((8, 8), (8, 8)),
    ("resize_and_crop", 12): ((8, 12), (8, 12)),
    ("crop", 12): ((8, 12), (8, 12)),
    ("scale_width_and_crop", 12): ((8, 12), (8, 12)),
    # width 16, height max(int(16 * 20 / 24), 8) = 13 -> 12; test: width 12, height 10 -> round(2.5) * 4 = 8
    ("scale_width", 0): ((12, 16), (8, 8)),
    ("scale_width", 12): ((12, 16), (8, 12)),
    ("none", 0): ((20, 24), (20, 24)),
}


@pytest.mark.parametrize("mode, crop_width", list(MODE_SHAPES))
def test_preprocess_modes_sizes_and_shared_crops(tmp_path, mode, crop_width):
  c = coordinate_config(tmp_path, preprocess=mode, crop_width=crop_width)
  train_hw, test_hw = MODE_SHAPES[mode, crop_width]
  assert data.train_image_hw(c) == train_hw
  for batch in take(data.make_train_iterator(c), 8):
    a, b = images.to_uint8(batch["A"][0]), images.to_uint8(batch["B"][0])
    assert a.shape == (*train_hw, 3) and b.shape == (*train_hw, 3)
    np.testing.assert_array_equal(a[..., :2], b[..., :2])  # the same resize, crop and flip on A and B
    assert a[..., 2].max() < 30 and b[..., 2].min() > 225  # A from the left side, B from the right
  assert data.make_eval_set(c)["A"].shape == (1, *test_hw, 3)
  write(tmp_path / "a.png", coordinate_pair()[:, :HALF_W])  # one side alone, for inference
  assert preprocess.load_image(tmp_path / "a.png", c, 1).shape == (*test_hw, 1)


def test_crop_positions_are_exact_shared_and_flipped(tmp_path):
  grid = coordinate_pair()[:, :HALF_W]
  c = coordinate_config(tmp_path, preprocess="crop", crop_size=8, crop_width=12)
  seen = set()
  for batch in take(data.make_train_iterator(c), 40):
    a = images.to_uint8(batch["A"][0]).astype(int)
    flip = a[0, 1, 0] < a[0, 0, 0]
    left, top = a[0, :, 0].min() // 10, a[0, 0, 1] // 10
    assert 0 <= left <= HALF_W - 12 and 0 <= top <= HALF_H - 8
    expected = grid[top:top + 8, left:left + 12]
    np.testing.assert_array_equal(a, expected[:, ::-1] if flip else expected)  # 'crop' does not resample
    seen.add((int(left), int(top), bool(flip)))
  assert {f for _, _, f in seen} == {False, True} and len(seen) > 10
  for batch in take(data.make_train_iterator(coordinate_config(tmp_path, preprocess="crop", no_flip=True)), 10):
    row = images.to_uint8(batch["A"][0])[0, :, 0].astype(int)
    assert np.all(np.diff(row) == 10)  # never flipped


def test_none_rounds_to_the_generator_multiple_and_warns_once(tmp_path, capsys):
  images.print_once.cache_clear()  # the warning is once per process
  c = coordinate_config(tmp_path, preprocess="none", netG="unet_32")
  assert data.train_image_hw(c) == (32, 32)  # 24x20 -> multiples of 32 (upstream: of 4, too small for a U-Net)
  assert next(data.make_train_iterator(c))["A"].shape == (1, 32, 32, 3)
  assert data.make_eval_set(c)["B"].shape == (1, 32, 32, 3)
  assert capsys.readouterr().out.count("The image size needs to be a multiple of 32") == 1


def test_preprocess_config_errors(tmp_path):
  with pytest.raises(ValueError, match="crop_width=20.*load_size=16"):
    data.train_image_hw(coordinate_config(tmp_path, crop_width=20))
  with pytest.raises(ValueError, match="crop width 20.*scale_width_and_crop"):
    data.train_image_hw(coordinate_config(tmp_path, preprocess="scale_width_and_crop", crop_width=20))
  with pytest.raises(ValueError, match="config.preprocess='zoom'"):
    data.train_image_hw(coordinate_config(tmp_path, preprocess="zoom"))


def test_data_sized_modes_need_one_shape(tmp_path):
  train = tmp_path / "facades" / "train"
  write(train / "1_wide.png", np.concatenate([uniform(20, 32, 0), uniform(20, 32, 9)], 1))  # another aspect
  write(train / "2_big.png", np.concatenate([uniform(40, 48, 0), uniform(40, 48, 9)], 1))  # twice 24x20
  c = coordinate_config(tmp_path, preprocess="none", serial_batches=True)
  with pytest.raises(data.BadImageError) as e:
    data.train_size(c)
  reasons = listed(str(e.value))
  assert set(reasons) == {"1_wide.png", "2_big.png"}
  assert reasons["1_wide.png"].startswith("is 32x20 (width x height) and becomes 32x20 under preprocess 'none',"
                                          " but the data set's first image becomes 24x20")
  c.preprocess = "scale_width"  # width 16: the same aspect gives the same shape
  with pytest.raises(data.BadImageError) as e:
    data.train_size(c)
  assert set(listed(str(e.value))) == {"1_wide.png"}
  c.data.check_images = False  # found when it is loaded instead, with the same advice
  it = data.make_train_iterator(c)
  next(it)
  with pytest.raises(data.BadImageError, match="1_wide.png is 32x20 .*'scale_width_and_crop'"):
    next(it)


# --- image formats and channels ------------------------------------------------------------------

# Sides of 16 x 16: JPEG's 4:2:0 chroma blocks (16 x 16) do not straddle the A|B border.
PAIR_RGB = np.concatenate([uniform(16, 16, 0) + [200, 100, 50], uniform(16, 16, 0) + [30, 60, 90]], 1).astype(np.uint8)
PAIR_GRAY = np.asarray(Image.fromarray(PAIR_RGB).convert("L"))


def format_image(mode: str) -> tuple[Image.Image, np.ndarray]:
  """PAIR_RGB as a PIL image of `mode`, and the 8-bit RGB the pipeline must read back."""
  if mode == "I;16":  # 16 bits: the gray levels times 257, read back as the gray levels
    return Image.fromarray(PAIR_GRAY.astype(np.uint16) * 257), np.repeat(PAIR_GRAY[..., None], 3, -1)
  if mode == "F":  # float in [0, 1]
    return Image.fromarray(PAIR_GRAY.astype(np.float32) / 255), np.repeat(PAIR_GRAY[..., None], 3, -1)
  image = Image.fromarray(PAIR_RGB).convert(mode)
  if mode in ("RGBA", "LA"):
    image.putalpha(64)  # dropped, not composited: the colours stay
  return image, np.asarray(image.convert("RGB"))


FORMATS = [("jpg", "RGB"), ("JPEG", "L"), ("jpg", "CMYK"), ("png", "RGB"), ("png", "RGBA"), ("png", "L"),
           ("png", "LA"), ("png", "P"), ("PNG", "I;16"), ("bmp", "RGB"), ("bmp", "L"), ("bmp", "P"),
           ("ppm", "RGB"), ("ppm", "L"), ("ppm", "I;16"), ("tif", "RGB"), ("tiff", "RGBA"), ("tif", "L"),
           ("TIF", "I;16"), ("tif", "F"), ("tif", "CMYK")]


@pytest.mark.parametrize("ext, mode", FORMATS)
def test_formats_and_channel_counts(tmp_path, ext, mode):
  image, rgb = format_image(mode)
  (tmp_path / "facades" / "test").mkdir(parents=True)
  jpeg = {"quality": 95, "subsampling": 0} if ext.lower() in ("jpg", "jpeg") else {}  # 4:4:4: no chroma bleed
  image.save(tmp_path / "facades" / "test" / f"0.{ext}", **jpeg)
  c = folder_config(tmp_path, preprocess="none", netG="resnet_6blocks", input_nc=1, output_nc=3, num_eval_images=1)
  ev = data.make_eval_set(c)
  assert ev["A"].shape == (1, 16, 16, 1) and ev["B"].shape == (1, 16, 16, 3)
  atol = 3 if ext.lower() in ("jpg", "jpeg") else 0
  gray = np.asarray(Image.fromarray(rgb).convert("L"))  # upstream: convert('RGB'), then Grayscale(1)
  np.testing.assert_allclose(images.to_uint8(ev["A"][0, ..., 0]), gray[:, :16], atol=atol)
  np.testing.assert_allclose(images.to_uint8(ev["B"][0]), rgb[:, 16:], atol=atol)


def write_png16_rgb(path: pathlib.Path, x: np.ndarray) -> None:
  """A 16-bit RGB PNG (PIL cannot write one): (H, W, 3) uint16."""
  h, w, _ = x.shape

  def chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

  rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in x)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("ext", ["png", "tif", "ppm", "rgb.png"])
def test_16_bit_gradients_are_scaled_not_clipped(tmp_path, ext):
  ramp = np.rint(np.linspace(0, 65535, 64)).astype(np.uint16)[None].repeat(4, 0)  # (4, 64)
  path = tmp_path / f"ramp.{ext}"
  if ext == "rgb.png":
    write_png16_rgb(path, np.stack([ramp, ramp, ramp], -1))
  else:
    Image.fromarray(ramp).save(path)
  c = small_config(preprocess="none", netG="resnet_6blocks")
  got = images.to_uint8(preprocess.load_image(path, c, 1))[..., 0].astype(int)
  expected = np.rint(ramp / 257).astype(int)  # upstream's convert('RGB') clips: 255 from the 2nd column on
  np.testing.assert_allclose(got, expected, atol=1 if ext == "rgb.png" else 0)  # PIL keeps RGB's high byte
  assert got[0, 0] == 0 and got[0, -1] == 255 and got[0, 32] == expected[0, 32]


# --- the bad-file check ------------------------------------------------------------------------


def truncated(path: pathlib.Path) -> None:
  write(path, np.random.default_rng(0).integers(0, 256, (32, 64, 3)))
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def bad_file_dataset(root: pathlib.Path) -> set[str]:
  """4 good A|B files and 6 bad ones in <root>/facades/train; returns the bad files' names."""
  train = root / "facades" / "train"
  for i in range(3):
    write(train / f"good{i}.png", np.concatenate([uniform(8, 8, 10 * i), uniform(8, 8, 200)], 1))
  write(train / "tall.png", np.concatenate([uniform(16, 4, 30), uniform(16, 4, 220)], 1))  # upstream accepts it
  truncated(train / "truncated.png")
  truncated(train / "sub" / "truncated.jpg")
  (train / "text.jpg").write_text("not an image")
  (train / "empty.png").write_bytes(b"")
  write(train / "odd.png", uniform(8, 17, 40))  # upstream accepts it: A 8 columns, B 9
  write(train / "narrow.bmp", uniform(12, 1, 0))  # 1 px wide: no A|B pair (a tall even-width pair is fine)
  return {"truncated.png", "truncated.jpg", "text.jpg", "empty.png", "narrow.bmp"}


def listed(message: str) -> dict[str, str]:
  """{file name: reason} of the '  path: reason' lines of a bad-file report."""
  lines = [line.strip().split(": ", 1) for line in message.splitlines() if line.startswith("  ") and ": " in line]
  return {pathlib.Path(path).name: why for path, why in lines}


def test_check_lists_exactly_the_bad_files_in_one_error(tmp_path):
  bad = bad_file_dataset(tmp_path)
  c = folder_config(tmp_path, load_size=8, crop_size=8)
  for opens_the_data in (data.train_size, data.make_train_iterator, data.train_image_hw):
    with pytest.raises(data.BadImageError) as e:
      opens_the_data(c)
    reasons = listed(str(e.value))
    assert set(reasons) == bad and str(e.value).startswith("5 of 10 image files cannot be used")
  assert "truncated" in reasons["truncated.jpg"]
  assert "must be A|B side by side" in reasons["narrow.bmp"] and "skip_bad_images" in str(e.value)


def test_skip_bad_images_leaves_them_out_and_says_which(tmp_path, capsys):
  bad = bad_file_dataset(tmp_path)
  c = folder_config(tmp_path, load_size=8, crop_size=8, batch_size=1, serial_batches=True, data_skip_bad_images=True)
  assert data.train_size(c) == 5
  out = capsys.readouterr().out
  assert "Leaving out 5 of 10 image files" in out and set(listed(out)) == bad
  assert values(take(data.make_train_iterator(c), 6), "A") == [0, 10, 20, 40, 30, 0]
  assert "Leaving out" not in capsys.readouterr().out  # said once


def test_check_lists_images_smaller_than_the_crop(tmp_path):
  aligned_dataset(tmp_path, n=2)
  write(tmp_path / "facades" / "train" / "small.png", uniform(6, 12, 0))
  with pytest.raises(data.BadImageError) as e:
    data.train_size(folder_config(tmp_path, preprocess="crop", crop_size=8))
  assert set(listed(str(e.value))) == {"small.png"} and "smaller than the 8x8 crop" in str(e.value)
  assert data.train_size(folder_config(tmp_path, crop_size=8)) == 3  # resize_and_crop: any size will do


@pytest.mark.parametrize("workers", [0, 1])
def test_file_that_goes_bad_during_training_is_named(tmp_path, workers):
  aligned_dataset(tmp_path, n=3)
  it = data.make_train_iterator(folder_config(tmp_path, batch_size=1, serial_batches=True, data_num_workers=workers))
  (tmp_path / "facades" / "train" / "1.jpg").write_bytes(b"overwritten")  # after the check passed
  try:
    next(it)
    with pytest.raises(data.BadImageError, match=r"Cannot decode image file .*1\.jpg: UnidentifiedImageError"):
      next(it)
  finally:
    if workers:
      it.close()


# --- resume with worker processes ----------------------------------------------------------------


def test_resume_with_worker_processes_gives_the_same_batches(tmp_path):
  aligned_dataset(tmp_path, n=5)
  c = folder_config(tmp_path, load_size=12, crop_size=8, data_num_workers=1)  # 5 examples, batch 2
  it = data.make_train_iterator(c)
  take(it, 3)
  state = it.get_state()
  expected = take(it, 4)
  it.close()
  resumed = data.make_train_iterator(c)
  resumed.set_state(state)
  try:
    assert_batches_equal(take(resumed, 4), expected)
  finally:
    resumed.close()
  c.data.num_workers = 0
  assert_batches_equal(take(data.make_train_iterator(c), 7)[3:], expected)  # as without workers


# --- inference: the 'single' mode and one image ----------------------------------------------------


def test_single_folder_is_sorted_recursive_and_capped(tmp_path):
  folder = tmp_path / "photos"
  for name in ("b.png", "a.JPG", "sub/c.tiff"):
    write(folder / name, uniform(8, 8, 0))
  (folder / "notes.txt").write_text("not listed")
  assert [pathlib.Path(p).relative_to(folder).as_posix() for p in sources.single_folder(folder)] == [
      "a.JPG", "b.png", "sub/c.tiff"]
  assert len(sources.single_folder(folder, 2)) == 2
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="empty"):
    sources.single_folder(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
    sources.single_folder(tmp_path / "nowhere" / "x")


def test_load_image_keeps_the_aspect_for_none_and_scale_width(tmp_path):
  path = tmp_path / "wide.png"
  write(path, uniform(30, 70, 100))
  c = small_config(netG="resnet_6blocks", crop_size=16)
  assert preprocess.load_image(path, c, 3).shape == (16, 16, 3)  # resize_and_crop: the crop, whole image
  c.preprocess = "none"
  assert preprocess.load_image(path, c, 1).shape == (32, 72, 1)  # 30x70 rounded to multiples of 4 (round half to even)
  c.preprocess = "scale_width"
  assert preprocess.load_image(path, c, 3).shape == (16, 16, 3)  # width 16, height max(6, 16)
  c.preprocess, c.crop_size = "crop", 32
  with pytest.raises(data.BadImageError, match=r"wide.png is 70x30 .*smaller than the 32x32 crop"):
    preprocess.load_image(path, c, 3)
  (tmp_path / "bad.png").write_bytes(b"")
  with pytest.raises(data.BadImageError, match="bad.png"):
    preprocess.load_image(tmp_path / "bad.png", c, 3)
