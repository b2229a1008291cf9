"""cycle_gan on facades: 400 facade photos (A) and label maps (B), unpaired.

    python -m gantx.download facades --root ./datasets --kind cyclegan
    python train.py --config configs/cyclegan_facades.py --workdir runs/cyclegan_facades

Paper settings, as the official defaults for CycleGAN: resnet_9blocks, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.
tfds instead of folders: --config.data.source=tfds.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("cycle_gan", "facades")
