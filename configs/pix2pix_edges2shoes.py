"""pix2pix on edges2shoes: 50k edges -> shoe photos; the paper trains 15 epochs at batch 4 (the constant/decay split is ours).

    python -m gantx.download edges2shoes --root ./datasets
    python train.py --config configs/pix2pix_edges2shoes.py --workdir runs/pix2pix_edges2shoes

Settings of the pix2pix paper and the official defaults: unet_256, 70x70 PatchGAN, batch
norm, vanilla GAN + 100 * L1, Adam(2e-4, 0.5), resize 286 -> random crop 256 + flip.
"""

from gantx.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.direction = "AtoB"
  c.batch_size = 4
  c.n_epochs = 10
  c.n_epochs_decay = 5
  c.data.source = "folder"
  c.data.name = "edges2shoes"
  c.data.root = "./datasets"
  return c
