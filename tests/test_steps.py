"""The train steps: they learn something, are bitwise deterministic, compile once, and follow
the official objectives (gradient penalty applied, identity loss switchable)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from gantx import state as state_lib, steps


def _batch(config, seed=1, n=2):
  k1, k2 = jax.random.split(jax.random.key(seed))
  size = (n, config.crop_size, config.crop_size)
  return {"A": jax.random.uniform(k1, size + (config.input_nc,), minval=-1, maxval=1),
          "B": jax.random.uniform(k2, size + (config.output_nc,), minval=-1, maxval=1)}


@functools.cache
def _compiled(model: str, **overrides):
  config = tiny_config(model, **overrides)
  nets = state_lib.build_networks(config, 10)
  init = lambda key: state_lib.init_state(config, nets, key, (config.crop_size, config.crop_size))
  return config, nets, init, jax.jit(steps.train_step_fn(config, nets))


def _arrays(tree):
  """Leaves as numpy arrays (PRNG keys as their key data)."""
  as_np = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
  return [as_np(x) for x in jax.tree.leaves(tree)]


def _differs(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


@pytest.mark.parametrize("model,names", [
    ("pix2pix", {"G_GAN", "G_L1", "D_real", "D_fake", "lr"}),
    ("cycle_gan", {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "lr"}),
])
def test_step_updates_every_net_and_is_bitwise_deterministic(model, names):
  config, nets, init, step = _compiled(model)
  batch = _batch(config)
  s0 = init(jax.random.key(0))
  s1, m1 = step(s0, batch)
  assert set(m1) == names
  assert int(s1.step) == 1
  for name in s0.params:
    assert _differs(s0.params[name], s1.params[name]), name
  s1_again, m1_again = step(init(jax.random.key(0)), batch)
  for a, b in zip(_arrays((s1, m1)), _arrays((s1_again, m1_again))):
    np.testing.assert_array_equal(a, b)
  s2, _ = step(s1, _batch(config, seed=2))
  assert step._cache_size() == 1  # a new batch and a stepped state do not retrace
  assert _differs(s1.params, s2.params)


def test_cycle_gan_pools_fill_with_the_fakes():
  config, _, init, step = _compiled("cycle_gan")
  s1, _ = step(init(jax.random.key(0)), _batch(config))
  for name in ("fake_A", "fake_B"):
    assert int(s1.pools[name].num_imgs) == 2
    assert float(jnp.abs(s1.pools[name].images[:2]).sum()) > 0
    assert float(jnp.abs(s1.pools[name].images[2:]).sum()) == 0


def test_identity_loss_is_off_when_lambda_identity_is_zero():
  config, _, init, step = _compiled("cycle_gan", lambda_identity=0.0)
  _, m = step(init(jax.random.key(0)), _batch(config))
  assert float(m["idt_A"]) == 0.0 and float(m["idt_B"]) == 0.0 and float(m["cycle_A"]) > 0


def test_wgangp_applies_the_gradient_penalty():
  """Same init and batch, lambda_gp 10 vs 0: D's update differs only through the penalty."""
  outs = []
  for lambda_gp in (10.0, 0.0):
    config, _, init, step = _compiled("pix2pix", gan_mode="wgangp", lambda_gp=lambda_gp)
    s1, m = step(init(jax.random.key(0)), _batch(config))
    outs.append((s1, m))
  assert _differs(outs[0][0].params["D"], outs[1][0].params["D"])
  assert float(outs[0][1]["D_real"]) == float(outs[1][1]["D_real"])  # same D before its step


def test_generator_step_sees_the_updated_discriminator():
  """With lambda_L1 = 0, G's update comes only through D. Adam's first step moves each
  parameter by -lr * sign(grad), so the signs of G's update must match G's gradient through
  D *after* its step (all significant entries), and not the one through the old D."""
  config, nets, init, step = _compiled("pix2pix", lambda_L1=0.0, norm="instance", no_dropout=True)
  batch = _batch(config)
  s0 = init(jax.random.key(0))
  s1, _ = step(s0, batch)
  delta = np.concatenate([(b - a).ravel() for a, b in zip(_arrays(s0.params["G"]), _arrays(s1.params["G"]))])

  def sign_agreement(d_params):
    def loss(g):
      fake = nets.modules["G"].apply({"params": g}, batch["A"], train=True)
      pred = nets.modules["D"].apply({"params": d_params}, jnp.concatenate([batch["A"], fake], -1), train=True)
      return jnp.mean(jax.nn.softplus(-pred))  # vanilla GAN, target real
    grads = np.concatenate([g.ravel() for g in _arrays(jax.grad(loss)(s0.params["G"]))])
    significant = np.abs(grads) > 1e-3 * np.abs(grads).max()
    return np.mean(np.sign(delta[significant]) == -np.sign(grads[significant]))

  assert sign_agreement(s1.params["D"]) == 1.0
  assert sign_agreement(s0.params["D"]) < 0.99
