"""cycle_gan on horse2zebra: 939 horse and 1,177 zebra photos.

    python -m gantx.download horse2zebra --root ./datasets --kind cyclegan
    python train.py --config configs/cyclegan_horse2zebra.py --workdir runs/cyclegan_horse2zebra

Paper settings, as the official defaults for CycleGAN: resnet_9blocks, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.
tfds instead of folders: --config.data.source=tfds.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("cycle_gan", "horse2zebra")
