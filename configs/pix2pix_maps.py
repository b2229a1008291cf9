"""pix2pix on maps: 1,096 pairs; A = aerial photo, B = map.

    python -m gantx.download maps --root ./datasets
    python train.py --config configs/pix2pix_maps.py --workdir runs/pix2pix_maps

Paper settings, as the official defaults for pix2pix: unet_256, batch norm, vanilla GAN + 100 L1, resize 286 -> crop 256 + flip.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("pix2pix", "maps", direction="AtoB")
