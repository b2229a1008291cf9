"""pix2pix on night2day: ~20k night -> day photos; the paper trains 17 epochs at batch 4 (the constant/decay split is ours).

    python -m gantx.download night2day --root ./datasets
    python train.py --config configs/pix2pix_night2day.py --workdir runs/pix2pix_night2day

Settings of the pix2pix paper and the official defaults: unet_256, 70x70 PatchGAN, batch
norm, vanilla GAN + 100 * L1, Adam(2e-4, 0.5), resize 286 -> random crop 256 + flip.
"""

from gantx.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.direction = "AtoB"
  c.batch_size = 4
  c.n_epochs = 10
  c.n_epochs_decay = 7
  c.data.source = "folder"
  c.data.name = "night2day"
  c.data.root = "./datasets"
  return c
