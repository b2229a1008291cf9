"""pix2pix colorization, as the official `--model colorization`: any folder of colour photos, no pairs.

    python train.py --config configs/pix2pix_colorization.py --workdir runs/pix2pix_colorization

Reads colour photos from datasets/colorization/train/ and test/ (or val/), any file names and sizes
(resize_and_crop). Each photo is its own pair, as the official colorization data mode makes it: A =
its Lab lightness L / 50 - 1 (1 channel), B = its colours ab / 110 (2 channels); unet_256 learns A ->
B with pix2pix's losses. Samples, translate and evaluate show RGB (the input's lightness with the
colours); held-out metrics: L1 of the colours, PSNR, SSIM and sharpness of the RGB images. Offline,
--config.data.source=builtin colours the built-in renderings.
"""

from gantx.config import dataset_config


def get_config():
  return dataset_config("colorization", "colorization")
