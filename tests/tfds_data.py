"""A tiny *prepared* tfds `cycle_gan/<name>` data set, written offline and without TensorFlow.

`write_cycle_gan` runs tfds's own preparation, `DatasetBuilder.download_and_prepare(file_format='array_record')`
on the real registered builder (`tensorflow_datasets.image_classification.cycle_gan.CycleGAN`, v3.0.0),
which is what `tfds build cycle_gan/<name> --file_format array_record` runs. Only the two steps that
would touch the network or TensorFlow are replaced, on that builder instance:

- `_split_generators`: the real one downloads `<name>.zip` and lists its trainA/trainB/testA/testB
  folders with `tf.io.gfile`; here each split yields (file name, {'image': JPEG bytes, 'label': 'A'|'B'})
  from memory, which is what the real `_generate_examples` yields for the zip's JPEG files (its
  `image` is a file path, and the `Image()` feature, declared without an encoding, stores the file's
  bytes as they are).
- `_make_download_manager`: nothing is downloaded (the real one also needs `importlib_resources`,
  missing here, to locate the builder's checksums file).

Everything else is tfds's: the feature encoding and tf.train.Example serialization (tfds's vendored
proto, no TF), the shuffle by hashed key, the ArrayRecord shards and their file names, and the
metadata files (dataset_info.json, features.json, label.labels.txt, and `cycle_gan/.config/metadata.json`).
"""

from __future__ import annotations

import io
import os
import types

import numpy as np
from PIL import Image

SPLITS = {"trainA": "A", "trainB": "B", "testA": "A", "testB": "B"}  # split -> its label
DEFAULT_COUNTS = {"trainA": 4, "trainB": 4, "testA": 2, "testB": 2}


def _jpeg(image: np.ndarray) -> tuple[bytes, np.ndarray]:
  """`image` encoded as JPEG, and the array that decoding those bytes gives (what tfds reads back)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=90)
  data = buffer.getvalue()
  with Image.open(io.BytesIO(data)) as decoded:
    return data, np.asarray(decoded.convert("RGB"))


def _image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
  """A smooth random colour field plus noise, uint8 (H, W, 3): survives JPEG recognisably."""
  h, w = size
  corners = rng.uniform(0, 255, (2, 2, 3))
  y, x = np.linspace(0, 1, h)[:, None, None], np.linspace(0, 1, w)[None, :, None]
  field = (corners[0, 0] * (1 - y) * (1 - x) + corners[0, 1] * (1 - y) * x
           + corners[1, 0] * y * (1 - x) + corners[1, 1] * y * x)
  return np.clip(field + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def write_cycle_gan(data_dir: os.PathLike | str, name: str, counts: dict[str, int] | None = None,
                    size: tuple[int, int] = (32, 32), seed: int = 0) -> dict[str, np.ndarray]:
  """Prepares tfds `cycle_gan/<name>` (ArrayRecord) under `data_dir`, as `tfds build` would.

  Writes `<data_dir>/cycle_gan/<name>/3.0.0/` (dataset_info.json, features.json, label.labels.txt,
  `cycle_gan-<split>.array_record-00000-of-00001` per split) and `<data_dir>/cycle_gan/.config/metadata.json`,
  readable with `tfds.data_source(f"cycle_gan/{name}", split=..., data_dir=data_dir, download=False)`.

  Args:
    data_dir: the tfds data_dir (gantx's config.data.root).
    name: a cycle_gan config name, e.g. 'horse2zebra' (tfds rejects others).
    counts: examples per split, for all of trainA, trainB, testA, testB (each at least 1; tfds's
      writer refuses an empty split). Default: DEFAULT_COUNTS.
    size: (height, width) of every image.
    seed: the images' random seed.
  Returns:
    split -> uint8 (n, H, W, 3): the images as `source[i]['image']` returns them, i.e. the decoded
    JPEGs, in the data set's order (tfds shuffles each split by the hash of the example keys).
  Raises:
    ValueError: counts do not name the four splits, or a count is below 1.
    FileExistsError: the data set is already prepared there (tfds would silently reuse it).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top

  counts = dict(DEFAULT_COUNTS if counts is None else counts)
  if set(counts) != set(SPLITS) or min(counts.values()) < 1:
    raise ValueError(f"counts={counts} must give each of {sorted(SPLITS)} at least 1 example.")
  rng = np.random.default_rng(seed)
  records, decoded = {}, {}
  for split, label in SPLITS.items():
    keys = [f"{split}_{i:04d}.jpg" for i in range(counts[split])]  # file names, as the real keys
    encoded = [_jpeg(_image(rng, size)) for _ in keys]
    records[split] = [(key, {"image": data, "label": label}) for key, (data, _) in zip(keys, encoded)]
    # tfds's Shuffler writes a split sorted by the md5 of its keys salted with the split name.
    hasher = hashing.Hasher(salt=split)
    order = sorted(range(len(keys)), key=lambda i: hasher.hash_key(keys[i]))  # pylint: disable=cell-var-from-loop
    decoded[split] = np.stack([encoded[i][1] for i in order])

  builder = tfds.builder(f"cycle_gan/{name}", data_dir=os.fspath(data_dir))
  if builder.data_path.exists():
    raise FileExistsError(f"{builder.data_path} exists already: tfds would reuse it, not rewrite it.")
  # pylint: disable=protected-access
  builder._split_generators = lambda dl_manager: {s: iter(r) for s, r in records.items()}
  builder._make_download_manager = lambda **kwargs: types.SimpleNamespace(downloaded_size=0)
  # pylint: enable=protected-access
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return decoded
