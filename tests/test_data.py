"""Tests of gantx.data: built-in, folder and tfds sources, preprocessing, resume and sharding."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from gantx import config as config_lib
from gantx import data


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
  for a, b in zip(data.to_uint8(ev["A"]), data.to_uint8(ev["B"])):
    np.testing.assert_array_equal(data.render(a), b)
  again = data.make_eval_set(c)
  np.testing.assert_array_equal(ev["A"], again["A"])
  swapped = data.make_eval_set(small_config(model=model, direction="BtoA"))
  np.testing.assert_array_equal(swapped["A"], ev["B"])
  np.testing.assert_array_equal(swapped["B"], ev["A"])


def test_builtin_train_pairs_follow_render_and_splits_differ():
  train = data.BuiltinPairs(seed=0, split=0, size=32, length=4)
  test = data.BuiltinPairs(seed=0, split=1, size=32, length=4)
  labels, photo = (np.asarray(x) for x in train.pair(0))
  assert set(map(tuple, labels.reshape(-1, 3))) <= set(map(tuple, data.LABEL_PALETTE))
  np.testing.assert_array_equal(data.render(labels), photo)
  assert not np.array_equal(labels, np.asarray(test.pair(0)[0]))
  # Unpaired domains are drawn from other label maps than the pairs and each other.
  unpaired = data.BuiltinUnpaired(seed=0, split=0, size=32, len_a=4, len_b=4)
  a0, b0 = np.asarray(unpaired.image_a(0)), np.asarray(unpaired.image_b(0))
  assert not np.array_equal(data.render(a0), b0)


def test_builtin_train_batches_follow_render_without_crop():
  batch = next(data.make_train_iterator(small_config(load_size=16)))  # flips on: render commutes with them
  for a, b in zip(data.to_uint8(batch["A"]), data.to_uint8(batch["B"])):
    np.testing.assert_array_equal(data.render(a), b)


def test_render_is_flip_equivariant():
  labels = data.label_map(np.random.default_rng(3), 40)
  np.testing.assert_array_equal(data.render(labels[:, ::-1]), data.render(labels)[:, ::-1])


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


def test_shuffled_epochs_and_disjoint_process_shards(tmp_path):
  for i in range(8):
    write(tmp_path / "d" / "train" / f"{i}.png", uniform(8, 16, 10 * i))
  c = small_config(data_source="folder", data_root=str(tmp_path), data_name="d", load_size=8, crop_size=8,
                   batch_size=4, no_flip=True)

  def ids(batch):
    return [int(round((v + 1) * 127.5)) // 10 for v in batch["A"][:, 0, 0, 0]]

  p0, p1 = (take(data.make_train_iterator(c, process_index=p, process_count=2), 4) for p in (0, 1))
  epochs = [ids(p0[k]) + ids(p1[k]) + ids(p0[k + 1]) + ids(p1[k + 1]) for k in (0, 2)]
  for epoch in epochs:  # each epoch is a permutation split over both processes
    assert sorted(epoch) == list(range(8))
  assert epochs[0] != epochs[1] and epochs[0] != list(range(8))  # reshuffled every epoch


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
  a = data.to_uint8(batch["A"]).astype(int)
  b = data.to_uint8(batch["B"]).astype(int)
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


def test_crop_and_none_preprocessing(tmp_path):
  aligned_dataset(tmp_path, h=10, w=14)
  crop = next(data.make_train_iterator(folder_config(tmp_path, preprocess="crop", crop_size=8)))
  assert crop["A"].shape == (2, 8, 8, 3)
  none = next(data.make_train_iterator(folder_config(tmp_path, preprocess="none")))
  assert none["A"].shape == (2, 8, 16, 3)  # 14x10 -> round(w / 4) * 4, round(h / 4) * 4 (Python round, as upstream)
  with pytest.raises(NotImplementedError, match="config.preprocess='scale_width'"):
    data.make_train_iterator(folder_config(tmp_path, preprocess="scale_width"))


def test_aligned_eval_set_uses_test_then_val(tmp_path):
  aligned_dataset(tmp_path)
  val = tmp_path / "facades" / "val"
  write(val / "v.png", np.concatenate([uniform(12, 12, 50), uniform(12, 12, 150)], 1))
  ev = data.make_eval_set(folder_config(tmp_path, crop_size=8, num_eval_images=5))
  assert ev["A"].shape == (1, 8, 8, 3) and ev["aligned"] == np.bool_(True)
  np.testing.assert_array_equal(data.to_uint8(ev["A"])[0, 0, 0], [50, 50, 50])
  write(tmp_path / "facades" / "test" / "t.png", np.concatenate([uniform(12, 12, 60), uniform(12, 12, 160)], 1))
  ev = data.make_eval_set(folder_config(tmp_path, crop_size=8))
  np.testing.assert_array_equal(data.to_uint8(ev["B"])[0, 0, 0], [160, 160, 160])


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
  return [int(data.to_uint8(b[key])[0, 0, 0, 0]) for b in batches]


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
  it = data.make_train_iterator(folder_config(tmp_path, batch_size=1, serial_batches=True))
  with pytest.raises(data.BadImageError, match="x.jpg"):
    take(it, 2)


def test_odd_width_aligned_image_names_the_file(tmp_path):
  write(tmp_path / "facades" / "train" / "odd.png", uniform(12, 25, 0))
  it = data.make_train_iterator(folder_config(tmp_path, batch_size=1))
  with pytest.raises(data.BadImageError, match="odd.png"):
    next(it)


def test_empty_folders_are_named(tmp_path):
  unaligned_dataset(tmp_path, n_b=0)
  (tmp_path / "h2z" / "trainB").mkdir()
  with pytest.raises(FileNotFoundError, match="trainB"):
    data.make_train_iterator(unaligned_config(tmp_path))
  (tmp_path / "facades" / "train").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="No images .* in folder .*train"):
    data.train_size(folder_config(tmp_path))
