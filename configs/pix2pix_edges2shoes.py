"""pix2pix on edges2shoes: 50k pairs, edges -> photo; the paper trains 15 epochs at
batch 4 (the split into constant and decaying lr is ours).

    python -m gantx.download edges2shoes --root ./datasets
    python train.py --config configs/pix2pix_edges2shoes.py --workdir runs/pix2pix_edges2shoes

Paper settings, as the official defaults for pix2pix: unet_256, batch norm, vanilla GAN + 100 L1, resize 286 -> crop 256 + flip.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("pix2pix", "edges2shoes", batch_size=4, n_epochs=10, n_epochs_decay=5)
