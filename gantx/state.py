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
import numpy as np
import optax
from flax import linen as nn

from gantx import models, pool, schedules

Array = jax.Array


# Config fields that enter the train step as values (`TrainState.hparams`), not as constants of
# the compiled program: one compiled step serves any of their values, and in a study each replica
# has its own (a sweep). Whether lambda_identity and lambda_GAN are 0 changes what the step runs
# (steps.StepSpec), so only their non-zero values are values.
HPARAM_FIELDS = ("lr", "beta1", "lambda_L1", "lambda_A", "lambda_B", "lambda_identity", "lambda_gp", "lambda_GAN")

# optax.adam's b2 and eps (b1 is config.beta1, a value of the state).
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


@flax.struct.dataclass
class TrainState:
  step: Array  # shape=(), int32: optimizer steps taken
  params: dict[str, Any]  # net name -> params
  batch_stats: dict[str, Any]  # net name -> BatchNorm running stats ({} without batch norm)
  opt_state: dict[str, Any]  # 'G', 'D' -> Adam state over those nets' params
  pools: dict[str, pool.PoolState]  # cycle_gan: 'fake_A', 'fake_B' history pools; pix2pix: {}
  key: Array  # typed PRNG key of the run; the step's key is fold_in(key, step)
  # HPARAM_FIELDS (float32) and the lr schedule's step counts (int32, schedules.STEP_FIELDS); shape=()
  # in a run, (replicas,) in a study. Set from the config at every start (`hyperparameters`).
  hparams: dict[str, Array]


class Networks(NamedTuple):
  """The static half of a model: its modules (not part of the state), and the data's steps per epoch."""

  modules: dict[str, nn.Module]  # net name -> module
  generators: tuple[str, ...]  # names optimised by the 'G' optimizer
  discriminators: tuple[str, ...]  # names optimised by the 'D' optimizer
  spe: int  # steps per epoch: the lr schedule's epochs in steps (`hyperparameters`)


def build_networks(config, spe: int) -> Networks:
  """The networks of `config.model`; one Adam over the generators ('G'), one over the discriminators ('D')."""
  a_nc, b_nc = config.input_nc, config.output_nc
  if config.model != "cycle_gan":  # pix2pix and colorization
    modules = {"G": models.define_G(config), "D": models.define_D(config, input_channels(config, "D"))}
  else:
    modules = {
        "G_A": models.define_G(config, a_nc, b_nc), "G_B": models.define_G(config, b_nc, a_nc),
        "D_A": models.define_D(config, b_nc), "D_B": models.define_D(config, a_nc),
    }
  gens = tuple(n for n in modules if n.startswith("G"))
  discs = tuple(n for n in modules if n.startswith("D"))
  return Networks(modules, gens, discs, spe)


def hyperparameters(config, spe: int) -> dict[str, np.ndarray]:
  """`config`'s HPARAM_FIELDS as float32 and its lr schedule's step counts for `spe` steps per epoch
  as int32 scalars: what `TrainState.hparams` holds."""
  return {**{f: np.float32(config[f]) for f in HPARAM_FIELDS}, **schedules.schedule_values(config, spe)}


def optimizer(lr_policy: str, hparams: dict[str, Array]) -> optax.GradientTransformation:
  """Adam(lr schedule, beta1, 0.999, 1e-8), with the learning rate and beta1 read from `hparams`."""
  return optax.adam(schedules.learning_rate(lr_policy, hparams), b1=hparams["beta1"], b2=ADAM_B2, eps=ADAM_EPS)


def input_channels(config, name: str) -> int:
  """Channels of the images that net `name` reads."""
  if name == "D" and config.model != "cycle_gan":
    if not config.conditional_D:
      return config.output_nc  # the unconditional D of the paper's 'GAN' ablation sees B alone
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
  hparams = jax.tree.map(jnp.asarray, hyperparameters(config, nets.spe))
  tx = optimizer(config.lr_policy, hparams)
  opt_state = {
      "G": tx.init({n: params[n] for n in nets.generators}),
      "D": tx.init({n: params[n] for n in nets.discriminators}),
  }
  pools = {}
  if config.model == "cycle_gan":
    pools = {"fake_B": pool.init(config.pool_size, (h, w, config.output_nc)),
             "fake_A": pool.init(config.pool_size, (h, w, config.input_nc))}
  return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, opt_state, pools, k_run, hparams)
