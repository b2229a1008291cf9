"""The grain pipeline: the endless training stream (per-host rows of global batches) and the eval set.

Determinism and multi-host: see the package docstring (`gantx.data`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import numpy as np
from PIL import Image

from gantx import seeds
from gantx.data import lab, sources
from gantx.data.images import BadImageError, to_uint8
from gantx.data.preprocess import Preprocess, check_channels

Batch = dict[str, np.ndarray]

# Purposes mixed with the data seed (seeds.from_config(config).data) into independent seeds.
_SHUFFLE, _AUGMENT = 1, 2


@dataclasses.dataclass(frozen=True)
class Examples:
  """Example index -> dict(A=(H, W, input_nc), B=(H, W, output_nc)) float32 in [-1, 1].

  Called by grain's random_map with the example index (from the shuffled stream) and an RNG keyed
  by the stream position. Each file is decoded once per call. Picklable, for worker processes.
  An image that does not give the one shape `hw` raises BadImageError naming it.
  """
  source: Any
  prep: Preprocess
  input_nc: int
  output_nc: int
  swap: bool  # config.direction == 'BtoA': the right side / domain B becomes the generator input.
  serial: bool  # unaligned: B at index mod |B| instead of a random one.
  hw: tuple[int, int]  # (H, W) of every example of this split
  test_time: bool  # the test-time transform (`test`) rather than the training one

  def _channels(self) -> tuple[int, int]:
    """Channel counts of (left side or domain A, right side or domain B) before the swap."""
    return (self.output_nc, self.input_nc) if self.swap else (self.input_nc, self.output_nc)

  def _out(self, first: np.ndarray, second: np.ndarray) -> Batch:
    return {"A": second, "B": first} if self.swap else {"A": first, "B": second}

  def _check(self, image: Image.Image, name: str) -> Image.Image:
    if (why := self.prep.problem(image.size, self.hw, self.test_time)) is not None:
      raise BadImageError(f"{name} {why}.")
    return image

  def _pair(self, index: int) -> tuple[Image.Image, Image.Image]:
    left, right = self.source.pair(index)
    if right.size != left.size and self.prep.mode not in ("crop", "resize_and_crop"):
      # An aligned file of odd width: B is one column wider. 'crop' cuts both at one offset and
      # 'resize_and_crop' resizes both to load_size, as upstream; the modes that keep the image's
      # aspect would give B another shape, so B takes A's size first.
      right = right.resize(left.size, Image.Resampling.BICUBIC)
    return self._check(left, self.source.name(index)), right

  def _unpaired(self, index: int, b_index: int) -> tuple[Image.Image, Image.Image]:
    src, i = self.source, index % self.source.len_a
    return self._check(src.image_a(i), src.name_a(i)), self._check(src.image_b(b_index), src.name_b(b_index))

  def _photo(self, index: int) -> Image.Image:
    return self._check(self.source.photo(index), self.source.name(index))

  @staticmethod
  def _colorization(rgb: np.ndarray) -> Batch:
    """The official colorization example of a preprocessed photo: A = L / 50 - 1, B = ab / 110."""
    a, b = lab.split(to_uint8(rgb))
    return {"A": a, "B": b}

  def __call__(self, index: int, rng: np.random.Generator) -> Batch:
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "photo"):  # colorization: a photo is its own pair (one crop and flip)
      photo = self._photo(index)
      return self._colorization(self.prep.train(photo, self.prep.draw(rng, photo.size), 3))
    if hasattr(self.source, "pair"):
      left, right = self._pair(index)
      aug = self.prep.draw(rng, left.size)  # one crop and flip for both sides
      return self._out(self.prep.train(left, aug, nc_first), self.prep.train(right, aug, nc_second))
    len_b = self.source.len_b
    image_a, image_b = self._unpaired(index, index % len_b if self.serial else int(rng.integers(len_b)))
    aug_a = self.prep.draw(rng, image_a.size)
    aug_b = self.prep.draw(rng, image_b.size)
    return self._out(self.prep.train(image_a, aug_a, nc_first), self.prep.train(image_b, aug_b, nc_second))

  def test(self, index: int) -> Batch:
    """The deterministic test-time example `index` (unaligned: A[i mod |A|], B[i mod |B|])."""
    nc_first, nc_second = self._channels()
    if hasattr(self.source, "photo"):
      return self._colorization(self.prep.test(self._photo(index), 3))
    if hasattr(self.source, "pair"):
      first, second = self._pair(index)
    else:
      first, second = self._unpaired(index, index % self.source.len_b)
    return self._out(self.prep.test(first, nc_first), self.prep.test(second, nc_second))


def _examples(config, train: bool) -> Examples:
  """The split's examples; its one shape comes from the crop, or ('none', 'scale_width') from the
  first image, as the bad-file check took it."""
  check_channels(config)
  prep = Preprocess.from_config(config)
  source = sources.split_source(config, train)
  test = not train
  if prep.crops:
    hw = prep.crop_hw
  else:
    size = sources.first_size(source)
    prep.warn_if_rounded(size, test)
    hw = prep.output_hw(size, test)
  return Examples(source, prep, config.input_nc, config.output_nc, swap=config.direction == "BtoA",
                  serial=config.serial_batches, hw=hw, test_time=test)


def train_image_hw(config) -> tuple[int, int]:
  """(H, W) of every training example the iterator yields: the crop (config_lib.crop_hw) for the
  crop modes; for 'none' and 'scale_width' the size the data set's first image becomes, rounded to
  the generator's multiple (a jitted step needs one shape; an image of another shape is a bad file).
  Runs the bad-file check, as every function here that opens the data set."""
  return _examples(config, train=True).hw


def derived_seed(seed: int, purpose: int) -> int:
  """An independent 32-bit seed for one use (shuffle, augmentation) of the data seed."""
  return int(np.random.SeedSequence([seed % 2**32, purpose]).generate_state(1)[0])


def train_size(config) -> int:
  """Examples per epoch: the number of pairs, or max(|A|, |B|) for unpaired data (cycle_gan).

  Counts files (or generated examples) after config.max_dataset_size and after leaving out bad
  files (config.data.skip_bad_images); the first call per process runs the bad-file check.
  """
  return sources.num_examples(sources.split_source(config, train=True))


def local_batch_size(config, process_count: int) -> int:
  """config.batch_size (global) split over processes; ValueError if it does not divide."""
  if config.batch_size % process_count:
    raise ValueError(
        f"config.batch_size={config.batch_size} (the global batch) must be divisible by the"
        f" number of processes ({process_count}).")
  return config.batch_size // process_count


def _allow_grain_multiprocessing() -> None:
  """grain 0.2.18 reads absl flags in mp_prefetch and fails outside an absl app (google/grain#1355)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1,
                        num_threads: int | None = None) -> grain.DatasetIterator:
  """An endless iterator of this process's training batches.

  Global batch k holds stream positions [k*B, (k+1)*B) (B = config.batch_size); this process
  yields its rows [p*b, (p+1)*b), b = B // process_count, and loads nothing else. The stream is
  the training set shuffled anew each epoch (in order with config.serial_batches), and every
  example's crop, flip and unaligned B index come from an RNG keyed by the data seed and its stream
  position, so the global batches do not depend on process_count. Missing data and bad files
  (the check) fail here.

  Loading: batches are prepared ahead by `num_threads` threads (PIL decodes and resizes without
  the GIL), in each of config.data.num_workers worker processes when there are any (grain
  mp_prefetch; its absl flag bug, google/grain#1355, is handled). Workers and threads change
  nothing in the batches.

  Args:
    config: the run config (model, direction, preprocess options, batch_size, seed, data_seed, data.*).
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()).
    num_threads: threads per loading process; default 2 in each worker, else the cores (at most 8).
  Returns:
    A grain DatasetIterator of dict(A=(b, H, W, input_nc), B=(b, H, W, output_nc)) float32 in
    [-1, 1], (H, W) = train_image_hw(config); get_state()/set_state() resume it exactly.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
  b = local_batch_size(config, process_count)
  examples = _examples(config, train=True)
  data_seed = seeds.from_config(config).data
  ds = grain.MapDataset.range(sources.num_examples(examples.source))
  if not config.serial_batches:
    ds = ds.shuffle(seed=derived_seed(data_seed, _SHUFFLE))  # index >= length: next epoch's order
  ds = ds.repeat().random_map(examples, seed=derived_seed(data_seed, _AUGMENT))
  # Blocks of b consecutive stream positions; global batch k is blocks [k*P, (k+1)*P), and process
  # p takes block k*P + p. Slicing a MapDataset is lazy: other processes' blocks are never loaded.
  ds = ds.batch(b, drop_remainder=True)[process_index::process_count]
  workers = config.data.num_workers
  if num_threads is None:
    num_threads = 2 if workers > 0 else max(1, min(8, os.cpu_count() or 1))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads))
  if workers > 0:
    _allow_grain_multiprocessing()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def make_eval_set(config) -> dict[str, np.ndarray]:
  """The first config.num_eval_images test examples, preprocessed as the official test.py does.

  Test-time transform (`Preprocess`): no crop jitter, no flip, load_size = crop size. Paired
  folders read test/ (else val/); unaligned folders and tfds read testA/testB, A[i mod |A|] with
  B[i mod |B|]. Built-in data is always paired here (for cycle_gan too): B = render(A), generated
  directly at crop_size. Like training examples, all have one shape (for 'none' and 'scale_width',
  that of the first test image).

  Returns:
    dict(A=(n, H, W, input_nc), B=(n, H, W, output_nc)) float32 in [-1, 1], n = min(num_eval_images,
    test examples), and 'aligned': np.bool_, True when B[i] is the true translation of A[i].
  """
  examples = _examples(config, train=False)
  n = min(config.num_eval_images, sources.num_examples(examples.source))
  items = [examples.test(i) for i in range(n)]
  out = {}
  for key, nc in (("A", config.input_nc), ("B", config.output_nc)):
    if items:
      out[key] = np.stack([item[key] for item in items])
    else:
      out[key] = np.zeros((0, *examples.hw, nc), np.float32)
  out["aligned"] = np.bool_(config.data.source == "builtin" or sources.is_paired(config))
  return out

