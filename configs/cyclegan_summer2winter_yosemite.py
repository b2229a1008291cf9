"""cycle_gan on summer2winter_yosemite: 1,273 summer and 854 winter photos.

    python -m gantx.download summer2winter_yosemite --root ./datasets --kind cyclegan
    python train.py --config configs/cyclegan_summer2winter_yosemite.py --workdir runs/cyclegan_summer2winter_yosemite

Paper settings, as the official defaults for CycleGAN: resnet_9blocks, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.
tfds instead of folders: --config.data.source=tfds.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("cycle_gan", "summer2winter_yosemite")
