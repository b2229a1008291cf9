"""pix2pix on facades: 400 pairs; A = photo, B = labels, so labels -> photo is BtoA.

    python -m gantx.download facades --root ./datasets
    python train.py --config configs/pix2pix_facades.py --workdir runs/pix2pix_facades

Paper settings, as the official defaults for pix2pix: unet_256, batch norm, vanilla GAN + 100 L1, resize 286 -> crop 256 + flip.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("pix2pix", "facades", direction="BtoA")
