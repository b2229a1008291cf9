"""cycle_gan on monet2photo: 1,074 Monet paintings and 6,853 photos.

    python -m gantx.download monet2photo --root ./datasets --kind cyclegan
    python train.py --config configs/cyclegan_monet2photo.py --workdir runs/cyclegan_monet2photo

Paper settings, as the official defaults for CycleGAN: resnet_9blocks, instance norm, LSGAN, cycle 10, identity 0.5, pool 50.
tfds instead of folders: --config.data.source=tfds.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("cycle_gan", "monet2photo")
