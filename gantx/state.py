"""The train state of both models: one pytree with everything a step reads and writes.

Networks are named as in the official `model_names`: pix2pix has 'G' and 'D'; cycle_gan has
'G_A' (A -> B), 'G_B' (B -> A), 'D_A' (judges B images) and 'D_B' (judges A images). As in
the official code there is one Adam over all generators ('G') and one over all
discriminators ('D').
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from gantx import models, pool, schedules

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array  # shape=(), int32: optimizer steps taken
  params: dict[str, Any]  # net name -> params
  batch_stats: dict[str, Any]  # net name -> BatchNorm running stats ({} without batch norm)
  opt_state: dict[str, Any]  # 'G', 'D' -> Adam state over those nets' params
  pools: dict[str, pool.PoolState]  # cycle_gan: 'fake_A', 'fake_B' history pools; pix2pix: {}
  key: Array  # typed PRNG key of the run; the step's key is fold_in(key, step)


class Networks(NamedTuple):
  """The static half of a model: modules and optimizers (not part of the state)."""

  modules: dict[str, nn.Module]  # net name -> module
  generators: tuple[str, ...]  # names optimised by the 'G' optimizer
  discriminators: tuple[str, ...]  # names optimised by the 'D' optimizer
  tx: optax.GradientTransformation
  schedule: optax.Schedule


def build_networks(config, spe: int) -> Networks:
  """The networks of `config.model` and Adam(lr schedule, beta1, 0.999) for G and for D."""
  a_nc, b_nc = config.input_nc, config.output_nc
  if config.model == "pix2pix":
    modules = {"G": models.define_G(config), "D": models.define_D(config, a_nc + b_nc)}
  else:
    modules = {
        "G_A": models.define_G(config, a_nc, b_nc), "G_B": models.define_G(config, b_nc, a_nc),
        "D_A": models.define_D(config, b_nc), "D_B": models.define_D(config, a_nc),
    }
  schedule = schedules.learning_rate(config, spe)
  tx = optax.adam(schedule, b1=config.beta1, b2=0.999, eps=1e-8)
  gens = tuple(n for n in modules if n.startswith("G"))
  discs = tuple(n for n in modules if n.startswith("D"))
  return Networks(modules, gens, discs, tx, schedule)


def input_channels(config, name: str) -> int:
  """Channels of the images that net `name` reads."""
  if name == "D" and config.model == "pix2pix":
    return config.input_nc + config.output_nc  # D sees cat(A, B), A first
  return config.output_nc if name in ("G_B", "D_A") else config.input_nc


def init_state(config, nets: Networks, key: Array, image_hw: tuple[int, int], run_key: Array | None = None
               ) -> TrainState:
  """A fresh state: each net initialised from its own key folded out of the first half of
  split(key); the state's run key is the second half, or `run_key` (`seeds.state_keys`)."""
  h, w = image_hw
  models.check_image_size(config, h, w)
  k_init, k_run = jax.random.split(key)
  if run_key is not None:
    k_run = run_key
  params, batch_stats = {}, {}
  for i, (name, module) in enumerate(nets.modules.items()):
    x = jnp.zeros((1, h, w, input_channels(config, name)), jnp.float32)
    variables = module.init({"params": jax.random.fold_in(k_init, i)}, x, train=False)
    params[name] = variables["params"]
    batch_stats[name] = variables.get("batch_stats", {})
  opt_state = {
      "G": nets.tx.init({n: params[n] for n in nets.generators}),
      "D": nets.tx.init({n: params[n] for n in nets.discriminators}),
  }
  pools = {}
  if config.model == "cycle_gan":
    pools = {"fake_B": pool.init(config.pool_size, (h, w, config.output_nc)),
             "fake_A": pool.init(config.pool_size, (h, w, config.input_nc))}
  return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, opt_state, pools, k_run)
