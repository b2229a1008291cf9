"""Quickstart for CycleGAN: the built-in unpaired data (label maps | rendered scenes), minutes on 2 CPU cores.

    python train.py --config configs/quickstart_cyclegan.py --workdir runs/quickstart_cyclegan

The two domains are never paired in training; the eval set knows the true translation of each
image, so held-out L1_G_A (label map -> its rendering) measures how well the mapping is found.
A resnet_6blocks generator at quarter width on 64x64 images.
"""

from gantx.config import base_config


def get_config():
  c = base_config("cycle_gan")
  c.netG = "resnet_6blocks"
  c.ngf = 16
  c.ndf = 16
  c.load_size = 72
  c.crop_size = 64
  c.batch_size = 1
  c.data.source = "builtin"
  c.data.name = "shapes_unpaired"
  c.data.num_train = 400
  c.data.num_test = 16
  c.num_train_steps = 1200
  c.log_every_steps = 50
  c.eval_every_steps = 300
  c.checkpoint_every_steps = 600
  return c
