"""GAN objectives, the gradient penalty and L1, as the official `GANLoss` and criteria.

Each loss takes D's raw output (logits; the official D has no sigmoid) and returns the mean
over every patch and every image of the batch, as PyTorch's reductions do.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from gantx import config as config_lib

Array = jax.Array


def gan_loss(pred: Array, target_is_real: bool, gan_mode: str, *, for_discriminator: bool = True) -> Array:
  """The GAN loss of D's output `pred` (any shape) against an all-real or all-fake target.

  Args:
    pred: D's logits, e.g. (N, 30, 30, 1) for the 70x70 PatchGAN.
    target_is_real: True for the label 1 (real), False for 0 (fake).
    gan_mode: 'vanilla' (BCE with logits), 'lsgan' (MSE), 'wgangp' (-mean / +mean), 'hinge'.
    for_discriminator: only matters for 'hinge', whose generator loss is -mean(pred) rather
      than the discriminator's margin loss. The other modes use one form for both, as the
      official `GANLoss` does (the generator asks for target_is_real=True).

  Returns:
    A float32 scalar.
  """
  pred = pred.astype(jnp.float32)
  if gan_mode == "vanilla":
    labels = jnp.full_like(pred, 1.0 if target_is_real else 0.0)
    return optax.sigmoid_binary_cross_entropy(pred, labels).mean()
  if gan_mode == "lsgan":
    return jnp.mean(jnp.square(pred - (1.0 if target_is_real else 0.0)))
  if gan_mode == "wgangp":
    return -pred.mean() if target_is_real else pred.mean()
  if gan_mode == "hinge":
    if not for_discriminator:
      return -pred.mean()
    return jnp.mean(jax.nn.relu(1.0 - pred)) if target_is_real else jnp.mean(jax.nn.relu(1.0 + pred))
  raise ValueError(f"config.gan_mode={gan_mode!r} is not one of {config_lib.GAN_MODES}.")


def l1(x: Array, y: Array) -> Array:
  """mean |x - y| (PyTorch `L1Loss`); shapes must match exactly, nothing broadcasts."""
  if x.shape != y.shape:
    raise ValueError(f"l1: shapes differ: {x.shape} vs {y.shape}.")
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def gradient_penalty(critic: Callable[[Array], Array], real: Array, fake: Array, key: Array,
                     constant: float = 1.0) -> Array:
  """WGAN-GP penalty mean((||grad critic(x_hat)||_2 - constant)^2), unweighted.

  As the official `cal_gradient_penalty(type='mixed')`: x_hat = a*real + (1-a)*fake with one
  a ~ U(0, 1) per sample; the gradient of the summed critic output (grad_outputs = ones)
  with respect to x_hat is flattened per sample, and 1e-16 is added before the norm. The
  official code defines this but never applies it; gantx adds lambda_gp times it to D's loss.

  Args:
    critic: maps an (N, H, W, C) batch to D's output (any shape with leading N).
    real, fake: (N, H, W, C) batches, fake without gradient to G.
    key: PRNG key for the interpolation weights.
  """
  n = real.shape[0]
  alpha = jax.random.uniform(key, (n,) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: critic(x).astype(jnp.float32).sum())(x_hat)
  norms = jnp.linalg.norm((grads + 1e-16).reshape(n, -1), axis=1)
  return jnp.mean(jnp.square(norms - constant))
