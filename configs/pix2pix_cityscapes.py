"""pix2pix on cityscapes: 2,975 label maps -> street photos (A = photo, B = labels). Upstream does not distribute this set: build it with the official prepare_cityscapes_dataset.py.

    python -m gantx.download cityscapes --root ./datasets
    python train.py --config configs/pix2pix_cityscapes.py --workdir runs/pix2pix_cityscapes

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
  c.data.name = "cityscapes"
  c.data.root = "./datasets"
  return c
