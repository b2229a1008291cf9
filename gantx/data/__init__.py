"""Input pipelines: built-in generated data, the official folder layouts, and tfds cycle_gan/*.

One module per concept:

  builtin     the generated label maps and their renderings (offline data of any size)
  images      image files: listing, decoding (8/16 bits, any mode), the A|B split, the bad-file check
  sources     the examples of a split: built-in, aligned and unaligned folders, tfds cycle_gan/*
  preprocess  the official get_params / get_transform, and one image for inference (`load_image`)
  pipeline    grain: the training stream, per-host rows, the eval set

The training loop calls four functions:

  train_size(config)            examples per epoch (after max_dataset_size and skipped files)
  train_image_hw(config)        (H, W) of every training example: one static shape for the jitted step
  make_train_iterator(config)   an endless grain iterator of host-local batches dict(A, B)
  make_eval_set(config)         the first num_eval_images test examples, as numpy arrays

and inference calls `sources.single_folder(path)` (the official 'single' mode) and
`preprocess.load_image(path, config, channels)` (one image, with the official test-time transform).

A is always the generator input: `config.direction == 'BtoA'` swaps the two sides (paired data)
or the two domains (unpaired data), as the official models do in `set_input`.

Sources (`config.data.source`):
  'builtin'  label maps and their renderings, generated from config.seed (offline, any size).
             `builtin.render(label_map)` is the exact label -> photo mapping.
  'folder'   `<data.root>/<data.name>/`: train/ val/ test/ of A|B images (pix2pix, 'aligned'), or
             trainA/ trainB/ testA/ testB/ (cycle_gan, 'unaligned'). Files: jpg, jpeg, png, ppm,
             bmp, tif, tiff in any letter case, 8 or 16 bits, any PIL mode (see `images.to_8bit`).
  'tfds'     tfds `cycle_gan/<data.name>` splits trainA/trainB/testA/testB (unpaired data only).

Preprocessing (`config.preprocess`, the official get_params / get_transform; see `preprocess.Preprocess`):
resize_and_crop, crop, scale_width, scale_width_and_crop and none, then a random horizontal flip
unless config.no_flip. Crops are crop_size x crop_size, or crop_size (height) x crop_width. A jitted
step needs one shape, so 'none' and 'scale_width' round sizes to the generator's multiple and every
image must give the shape of the data set's first image.

Bad files: unless config.data.check_images is False, every file of a folder split is decoded once
(in threads) before anything else, and ONE BadImageError lists every unreadable, truncated or
wrongly shaped file with its reason; config.data.skip_bad_images leaves them out instead and
prints their count and names. A file that fails later (changed after the check) raises
BadImageError naming it, from grain's worker threads and processes alike.

Determinism and multi-host: the examples form one global stream, shuffled per epoch with a seed
derived from the data seed (config.data_seed, else config.seed: gantx/seeds.py). Each example's
random crop, flip and (unaligned) B index come from an RNG keyed by that seed and the example's
position in that stream, never by the process. Global batch k is stream positions
[k*B, (k+1)*B); process p loads only rows [p*b, (p+1)*b) of it, where b = B / process_count, which
is the layout `jax.make_array_from_process_local_data` expects on a 1-D data mesh. Each example is
decoded and augmented once, by the process that uses it. The iterator's get_state()/set_state()
resume it exactly, with or without worker processes.
"""

from __future__ import annotations

from gantx.data.images import BadImageError
from gantx.data.pipeline import make_eval_set, make_train_iterator, train_image_hw, train_size

__all__ = ["BadImageError", "make_eval_set", "make_train_iterator", "train_image_hw", "train_size"]
