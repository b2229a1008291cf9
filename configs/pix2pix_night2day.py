"""pix2pix on night2day: ~20k pairs, night -> day; the paper trains 17 epochs at
batch 4 (the split into constant and decaying lr is ours).

    python -m gantx.download night2day --root ./datasets
    python train.py --config configs/pix2pix_night2day.py --workdir runs/pix2pix_night2day

Paper settings, as the official defaults for pix2pix: unet_256, batch norm, vanilla GAN + 100 L1, resize 286 -> crop 256 + flip.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("pix2pix", "night2day", batch_size=4, n_epochs=10, n_epochs_decay=7)
