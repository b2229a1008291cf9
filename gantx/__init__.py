"""gantx: pix2pix and CycleGAN in JAX/Flax, faithful to junyanz/pytorch-CycleGAN-and-pix2pix."""

__version__ = "0.1.0"
