"""cycle_gan on maps: 1,096 aerial photos (A) and maps (B), unpaired.

    python -m gantx.download maps --root ./datasets --kind cyclegan
    python train.py --config configs/cyclegan_maps.py --workdir runs/cyclegan_maps

Paper settings, as the official defaults for CycleGAN: resnet_9blocks, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.
tfds instead of folders: --config.data.source=tfds.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("cycle_gan", "maps")
