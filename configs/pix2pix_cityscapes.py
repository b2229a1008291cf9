"""pix2pix on cityscapes: 2,975 pairs; A = photo, B = label map. Upstream does not
distribute it: build it with the official prepare_cityscapes_dataset.py.

    python -m gantx.download cityscapes --root ./datasets
    python train.py --config configs/pix2pix_cityscapes.py --workdir runs/pix2pix_cityscapes

Paper settings, as the official defaults for pix2pix: unet_256, batch norm, vanilla GAN + 100 L1, resize 286 -> crop 256 + flip.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("pix2pix", "cityscapes", direction="BtoA")
