"""pix2pix on facades: 400 label maps -> facade photos (A = photo, B = labels, so BtoA).

    python -m gantx.download facades --root ./datasets
    python train.py --config configs/pix2pix_facades.py --workdir runs/pix2pix_facades

Settings of the pix2pix paper and the official defaults: unet_256, 70x70 PatchGAN, batch
norm, vanilla GAN + 100 * L1, Adam(2e-4, 0.5), resize 286 -> random crop 256 + flip.
"""

from gantx.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.direction = "BtoA"
  c.batch_size = 1
  c.n_epochs = 100
  c.n_epochs_decay = 100
  c.data.source = "folder"
  c.data.name = "facades"
  c.data.root = "./datasets"
  return c
