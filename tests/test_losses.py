"""GAN objectives, L1 and the gradient penalty against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gantx import losses

PRED = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)


def test_vanilla_is_bce_with_logits():
  softplus = lambda x: np.log1p(np.exp(x))
  np.testing.assert_allclose(losses.gan_loss(PRED, True, "vanilla"), np.mean(softplus(-PRED)), rtol=1e-6)
  np.testing.assert_allclose(losses.gan_loss(PRED, False, "vanilla"), np.mean(softplus(PRED)), rtol=1e-6)
  # By hand for one logit: -log(sigmoid(0.5)) = 0.474077
  np.testing.assert_allclose(losses.gan_loss(np.array([0.5]), True, "vanilla"), 0.474077, rtol=1e-5)


def test_lsgan_is_mse():
  np.testing.assert_allclose(losses.gan_loss(PRED, True, "lsgan"), (0.25 + 4 + 1 + 1) / 4, rtol=1e-6)
  np.testing.assert_allclose(losses.gan_loss(PRED, False, "lsgan"), (0.25 + 1 + 4 + 0) / 4, rtol=1e-6)


def test_wgangp_and_hinge():
  assert float(losses.gan_loss(PRED, True, "wgangp")) == pytest.approx(-0.375)
  assert float(losses.gan_loss(PRED, False, "wgangp")) == pytest.approx(0.375)
  # hinge D: mean(relu(1 - x)) for real, mean(relu(1 + x)) for fake; G: -mean(x)
  assert float(losses.gan_loss(PRED, True, "hinge")) == pytest.approx((0.5 + 2 + 0 + 1) / 4)
  assert float(losses.gan_loss(PRED, False, "hinge")) == pytest.approx((1.5 + 0 + 3 + 1) / 4)
  assert float(losses.gan_loss(PRED, True, "hinge", for_discriminator=False)) == pytest.approx(-0.375)


def test_unknown_mode_names_the_field():
  with pytest.raises(ValueError, match="config.gan_mode='wgan'"):
    losses.gan_loss(PRED, True, "wgan")


def test_l1():
  assert float(losses.l1(jnp.array([1.0, -1.0]), jnp.array([0.0, 0.5]))) == pytest.approx(1.25)
  with pytest.raises(ValueError, match="shapes differ"):
    losses.l1(jnp.zeros((2, 3)), jnp.zeros((3,)))


def test_gradient_penalty_of_a_linear_critic():
  """critic(x) = <w, x> per sample has gradient w everywhere: penalty = (||w + 1e-16|| - 1)^2."""
  w = jax.random.normal(jax.random.key(0), (4, 4, 3))
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  real = jax.random.normal(jax.random.key(1), (5, 4, 4, 3))
  fake = jax.random.normal(jax.random.key(2), (5, 4, 4, 3))
  expected = (np.linalg.norm(np.asarray(w) + 1e-16) - 1.0) ** 2
  np.testing.assert_allclose(losses.gradient_penalty(critic, real, fake, jax.random.key(3)), expected, rtol=1e-5)


def test_gradient_penalty_interpolates_per_sample():
  """critic(x) = sum(x^2) has gradient 2x: the penalty depends on where each sample's x_hat lies."""
  real, fake = jnp.ones((3, 2, 2, 1)), jnp.zeros((3, 2, 2, 1))
  key = jax.random.key(7)
  alpha = np.asarray(jax.random.uniform(key, (3, 1, 1, 1)))
  norms = np.linalg.norm((2 * alpha * np.ones((3, 2, 2, 1)) + 1e-16).reshape(3, -1), axis=1)
  got = losses.gradient_penalty(lambda x: jnp.sum(x**2, axis=(1, 2, 3)), real, fake, key)
  np.testing.assert_allclose(got, np.mean((norms - 1) ** 2), rtol=1e-5)
