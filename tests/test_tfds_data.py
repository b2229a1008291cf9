"""Tests of tests/tfds_data.py: a prepared tfds cycle_gan data set, written without TensorFlow, read
by tfds and by gantx's tfds loader as a `tfds build --file_format array_record` one would be."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from gantx import config as config_lib
from gantx import data
from gantx.data import images
from tfds_data import write_cycle_gan

tfds = pytest.importorskip("tensorflow_datasets")

NAME = "horse2zebra"
COUNTS = {"trainA": 4, "trainB": 3, "testA": 2, "testB": 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, images written per split): a tiny cycle_gan/horse2zebra, written once per module."""
  root = tmp_path_factory.mktemp("tfds")
  return root, write_cycle_gan(root, NAME, COUNTS, size=(32, 32), seed=0)


def tfds_config(root, **overrides):
  """A small cycle_gan config reading tfds cycle_gan/horse2zebra from `root`."""
  c = config_lib.base_config("cycle_gan")
  c.data.source, c.data.root, c.data.name = "tfds", str(root), NAME
  c.load_size, c.crop_size, c.netG = 36, 32, "resnet_2blocks"
  c.batch_size, c.num_eval_images = 2, 2
  for key, value in overrides.items():
    setattr(c, key, value)
  return c


def test_files_are_those_of_a_prepared_array_record_data_set(prepared):
  root, written = prepared
  version_dir = root / "cycle_gan" / NAME / "3.0.0"
  shards = {f"cycle_gan-{split}.array_record-00000-of-00001" for split in COUNTS}
  assert shards | {"dataset_info.json", "features.json", "label.labels.txt"} <= {p.name for p in version_dir.iterdir()}
  info = json.loads((version_dir / "dataset_info.json").read_text())
  assert (info["name"], info["configName"], info["version"], info["fileFormat"]) == (
      "cycle_gan", NAME, "3.0.0", "array_record")
  assert {s["name"]: sum(int(n) for n in s["shardLengths"]) for s in info["splits"]} == COUNTS
  features = json.loads((version_dir / "features.json").read_text())["featuresDict"]["features"]
  assert features["image"]["image"]["shape"]["dimensions"] == ["-1", "-1", "3"]
  assert not features["image"]["image"].get("encodingFormat")  # the zip's JPEG bytes, stored as they are
  assert features["label"]["classLabel"]["numClasses"] == "2"
  assert (version_dir / "label.labels.txt").read_text().split() == ["A", "B"]
  assert {k: v.shape for k, v in written.items()} == {k: (n, 32, 32, 3) for k, n in COUNTS.items()}
  with pytest.raises(FileExistsError):
    write_cycle_gan(root, NAME, COUNTS)


def test_tfds_data_source_reads_the_images_written(prepared):
  root, written = prepared
  for split, label in (("trainA", 0), ("trainB", 1), ("testA", 0), ("testB", 1)):
    source = tfds.data_source(f"cycle_gan/{NAME}", split=split, data_dir=str(root), download=False)
    assert len(source) == COUNTS[split]
    for i in range(len(source)):
      example = source[i]
      assert example["image"].dtype == np.uint8 and example["label"] == label
      np.testing.assert_array_equal(example["image"], written[split][i])
  assert "tensorflow" not in sys.modules


def test_gantx_loader_reads_the_prepared_data_set(prepared):
  root, written = prepared
  c = tfds_config(root)
  assert data.train_size(c) == 4  # max(|trainA|, |trainB|)
  batch = next(data.make_train_iterator(c))
  assert batch["A"].shape == batch["B"].shape == (2, 32, 32, 3) and batch["A"].dtype == np.float32
  ev = data.make_eval_set(c)
  assert ev["A"].shape == ev["B"].shape == (2, 32, 32, 3) and ev["aligned"] == np.bool_(False)
  # Test time at the images' own size: no resize, no crop, so A[i] = testA[i], B[i] = testB[i].
  for i in range(2):
    np.testing.assert_array_equal(images.to_uint8(ev["A"][i]), written["testA"][i])
    np.testing.assert_array_equal(images.to_uint8(ev["B"][i]), written["testB"][i])
  assert data.train_size(tfds_config(root, max_dataset_size=2)) == 2
  assert "tensorflow" not in sys.modules


def test_missing_data_set_names_the_path(tmp_path):
  c = tfds_config(tmp_path)
  with pytest.raises(FileNotFoundError, match=f"no prepared data set at {tmp_path / 'cycle_gan' / NAME}"):
    data.train_size(c)
  write_cycle_gan(tmp_path, "apple2orange")
  with pytest.raises(FileNotFoundError, match=f"cycle_gan/{NAME}"):  # another config of cycle_gan only
    data.train_size(c)
