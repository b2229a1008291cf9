"""pix2pix on maps: 1,096 aerial photos -> maps (A = aerial, B = map).

    python -m gantx.download maps --root ./datasets
    python train.py --config configs/pix2pix_maps.py --workdir runs/pix2pix_maps

Settings of the pix2pix paper and the official defaults: unet_256, 70x70 PatchGAN, batch
norm, vanilla GAN + 100 * L1, Adam(2e-4, 0.5), resize 286 -> random crop 256 + flip.
"""

from gantx.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.direction = "AtoB"
  c.batch_size = 1
  c.n_epochs = 100
  c.n_epochs_decay = 100
  c.data.source = "folder"
  c.data.name = "maps"
  c.data.root = "./datasets"
  return c
