"""Quickstart: pix2pix on the built-in data (label maps -> rendered scenes), a few minutes on 2 CPU cores.

    python train.py --config configs/quickstart.py --workdir runs/quickstart

A 64x64 U-Net (unet_64: the official U-Net with 6 levels) at half the official widths; the
data are generated, so nothing is downloaded. Held-out L1 and samples/*.png show it learning.
"""

from gantx.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.netG = "unet_64"
  c.ngf = 32
  c.ndf = 32
  c.load_size = 72
  c.crop_size = 64
  c.batch_size = 4
  c.data.source = "builtin"
  c.data.name = "shapes"
  c.data.num_train = 400
  c.data.num_test = 16
  c.num_train_steps = 600
  c.log_every_steps = 20
  c.eval_every_steps = 150
  c.checkpoint_every_steps = 300
  return c
