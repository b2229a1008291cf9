"""One pure train step per model, `(state, batch) -> (state, metrics)`, in the official order.

Batches are dicts of NHWC float32 arrays in [-1, 1]: 'A' (the generator input) and 'B'.
Under `jax.jit` over a data mesh the batch is one global array sharded on its first axis,
so every mean (losses, batch-norm statistics) is over the global batch.

All randomness comes from `fold_in(state.key, state.step)`: dropout masks, the pool's
draws and the gradient-penalty interpolation each take their own sub-key.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gantx import losses, pool
from gantx.state import Networks, TrainState

Array = jax.Array
Metrics = dict[str, Array]


def apply_net(nets: Networks, name: str, params, batch_stats: dict, x: Array, *, train: bool = True,
              key: Array | None = None) -> tuple[Array, dict]:
  """Runs net `name`; returns (output, updated batch_stats) (unchanged if not train or no BN)."""
  variables = {"params": params}
  rngs = {"dropout": key} if key is not None else {}
  stats = batch_stats.get(name, {})
  if not stats:
    return nets.modules[name].apply(variables, x, train=train, rngs=rngs), batch_stats
  variables["batch_stats"] = stats
  if not train:
    return nets.modules[name].apply(variables, x, train=False, rngs=rngs), batch_stats
  out, updated = nets.modules[name].apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
  return out, {**batch_stats, name: updated["batch_stats"]}


def discriminator_loss(config, critic: Callable[[Array, dict], tuple[Array, dict]], batch_stats: dict,
                       real: Array, fake: Array, *, real_first: bool, key: Array) -> tuple[Array, tuple]:
  """0.5 * (GAN(D(real), 1) + GAN(D(fake), 0)) [+ lambda_gp * penalty for wgangp].

  `critic(x, batch_stats) -> (logits, batch_stats)`. The two halves are separate D calls (so
  batch norm sees each batch alone, as in the official code), in the official order:
  pix2pix feeds the fake pair first, CycleGAN the real batch first.

  Returns (loss, (loss_real, loss_fake, batch_stats)).
  """
  fake = jax.lax.stop_gradient(fake)
  order = ((real, True), (fake, False)) if real_first else ((fake, False), (real, True))
  parts = {}
  for x, is_real in order:
    pred, batch_stats = critic(x, batch_stats)
    parts[is_real] = losses.gan_loss(pred, is_real, config.gan_mode)
  loss = 0.5 * (parts[True] + parts[False])
  if config.gan_mode == "wgangp":
    # D in train mode, as the official penalty would call it; its statistic update is dropped.
    penalty = losses.gradient_penalty(lambda x: critic(x, batch_stats)[0], real, fake, key)
    loss = loss + config.lambda_gp * penalty
  return loss, (parts[True], parts[False], batch_stats)


# optax.adam's b2 and eps, as state.build_networks sets them (b1 is config.beta1).
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


def _update(config, nets: Networks, group: str, names: tuple[str, ...], state: TrainState, grads) -> tuple[dict, Any]:
  """One Adam step of optimizer `group` ('G' or 'D') over nets `names`.

  The arithmetic of `nets.tx` (optax.adam(schedule, config.beta1, ADAM_B2, ADAM_EPS)), with the
  new moments written before the parameters read them. Left to itself XLA fuses the moment
  update into the parameter update; as the state is donated and updated in place, it then
  copies the old parameters and first moments before overwriting them: twice the memory
  traffic of the optimizer (measured: pix2pix batch-1 step 4% slower, 0.2 GiB more peak memory;
  BENCHMARKS.md).
  """
  params = {n: state.params[n] for n in names}
  old = state.opt_state[group]
  updates, opt_state = nets.tx.update(grads, old, params)
  if not _is_adam_state(old):
    return {**state.params, **optax.apply_updates(params, updates)}, {**state.opt_state, group: opt_state}
  # Recompute optax's updates from the new moments, behind a barrier (its own are dead code).
  adam, schedule_state = jax.lax.optimization_barrier(opt_state)
  count = adam.count  # already incremented, as optax's bias correction uses it
  bc1 = (1 - config.beta1**count).astype(jnp.float32)
  bc2 = (1 - ADAM_B2**count).astype(jnp.float32)
  step_size = -nets.schedule(old[1].count)  # scale_by_learning_rate reads the count before its increment

  def new_param(p, m, v):
    u = (m / bc1) / (jnp.sqrt(v / bc2 + 0.0) + ADAM_EPS)
    return (p + jnp.asarray(step_size, u.dtype) * u).astype(p.dtype)

  new = jax.tree.map(new_param, params, adam.mu, adam.nu)
  return {**state.params, **new}, {**state.opt_state, group: (adam, schedule_state)}


def _is_adam_state(opt_state) -> bool:
  return (isinstance(opt_state, tuple) and len(opt_state) == 2
          and isinstance(opt_state[0], optax.ScaleByAdamState) and isinstance(opt_state[1], optax.ScaleByScheduleState))


def pix2pix_step(config, nets: Networks, state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, Metrics]:
  """The official `Pix2PixModel.optimize_parameters`.

  1. fake_B = G(A), once (its VJP is kept for the G step, so G runs forward once).
  2. D on the detached fake pair (target 0), then the real pair (target 1); x0.5; D step.
  3. G through the updated D: GAN(D(A, fake_B), 1) + lambda_L1 * |fake_B - B|; G step.
  """
  real_a, real_b = batch["A"], batch["B"]
  k_drop, k_gp = jax.random.split(jax.random.fold_in(state.key, state.step))
  stats = state.batch_stats

  def generate(g_params):
    return apply_net(nets, "G", g_params, stats, real_a, key=k_drop)

  fake_b, g_vjp, stats = jax.vjp(generate, state.params["G"], has_aux=True)

  def critic_with(d_params):
    return lambda x, bs: apply_net(nets, "D", d_params, bs, x)

  def d_loss_fn(d_params):
    return discriminator_loss(
        config, critic_with(d_params), stats, jnp.concatenate([real_a, real_b], -1),
        jnp.concatenate([real_a, fake_b], -1), real_first=False, key=k_gp)

  (loss_d, (d_real, d_fake, stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  params, opt_state = _update(config, nets, "D", ("D",), state, {"D": d_grads})

  def g_loss_fn(fake):
    pred, bs = critic_with(params["D"])(jnp.concatenate([real_a, fake], -1), stats)
    g_gan = losses.gan_loss(pred, True, config.gan_mode, for_discriminator=False)
    g_l1 = config.lambda_L1 * losses.l1(fake, real_b)
    return g_gan + g_l1, (g_gan, g_l1, bs)

  (_, (g_gan, g_l1, stats)), d_fake_b = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_b)
  (g_grads,) = g_vjp(d_fake_b)
  state = state.replace(params=params, opt_state=opt_state)
  params, opt_state = _update(config, nets, "G", ("G",), state, {"G": g_grads})
  metrics = {"G_GAN": g_gan, "G_L1": g_l1, "D_real": d_real, "D_fake": d_fake,
             "lr": nets.schedule(state.step)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, batch_stats=stats), metrics


def cycle_gan_step(config, nets: Networks, state: TrainState, batch: dict[str, Array],
                   batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, Metrics]:
  """The official `CycleGANModel.optimize_parameters`.

  1. fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A); identity
     idt_A = G_A(B), idt_B = G_B(A) when lambda_identity > 0. Loss: lsgan/other GAN terms
     through the current D_A, D_B + cycle L1 (lambda_A, lambda_B) + identity L1
     (lambda_identity * lambda_B, lambda_identity * lambda_A). One G step over G_A and G_B.
  2. D_A on real B, then pool(fake_B); D_B on real A, then pool(fake_A), with the fakes from
     before the G step; each x0.5; one D step over D_A and D_B.
  """
  real_a, real_b = batch["A"], batch["B"]
  keys = jax.random.split(jax.random.fold_in(state.key, state.step), 10)
  lam_a, lam_b, lam_idt = config.lambda_A, config.lambda_B, config.lambda_identity

  def g_loss_fn(g_params):
    bs = state.batch_stats

    def gen(name, x, i):
      nonlocal bs
      out, bs = apply_net(nets, name, g_params[name], bs, x, key=keys[i])
      return out

    def judge(name, x):
      nonlocal bs
      out, bs = apply_net(nets, name, state.params[name], bs, x)
      return out

    fake_b = gen("G_A", real_a, 0)
    rec_a = gen("G_B", fake_b, 1)
    fake_a = gen("G_B", real_b, 2)
    rec_b = gen("G_A", fake_a, 3)
    terms = {"idt_A": jnp.zeros(()), "idt_B": jnp.zeros(())}
    if lam_idt > 0:
      terms["idt_A"] = losses.l1(gen("G_A", real_b, 4), real_b) * lam_b * lam_idt
      terms["idt_B"] = losses.l1(gen("G_B", real_a, 5), real_a) * lam_a * lam_idt
    terms["G_A"] = losses.gan_loss(judge("D_A", fake_b), True, config.gan_mode, for_discriminator=False)
    terms["G_B"] = losses.gan_loss(judge("D_B", fake_a), True, config.gan_mode, for_discriminator=False)
    terms["cycle_A"] = losses.l1(rec_a, real_a) * lam_a
    terms["cycle_B"] = losses.l1(rec_b, real_b) * lam_b
    return sum(terms.values()), (terms, fake_a, fake_b, bs)

  g_params = {n: state.params[n] for n in nets.generators}
  (_, (metrics, fake_a, fake_b, stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
  params, opt_state = _update(config, nets, "G", nets.generators, state, g_grads)
  state = state.replace(params=params, opt_state=opt_state, batch_stats=stats)

  pooled_b, pool_b = pool.query(state.pools["fake_B"], fake_b, keys[6])
  pooled_a, pool_a = pool.query(state.pools["fake_A"], fake_a, keys[7])
  if batch_sharding is not None:
    # The pool is replicated, so its output would be too, and every device would run D on the
    # whole global batch of pooled images; split them over the devices like the batch.
    pooled_b = jax.lax.with_sharding_constraint(pooled_b, batch_sharding)
    pooled_a = jax.lax.with_sharding_constraint(pooled_a, batch_sharding)

  def d_loss_fn(d_params):
    bs = state.batch_stats
    total = {}
    for name, real, fake, key in (("D_A", real_b, pooled_b, keys[8]), ("D_B", real_a, pooled_a, keys[9])):
      critic = functools.partial(lambda n, x, s: apply_net(nets, n, d_params[n], s, x), name)
      total[name], (_, _, bs) = discriminator_loss(config, critic, bs, real, fake, real_first=True, key=key)
    return total["D_A"] + total["D_B"], (total, bs)

  d_params = {n: state.params[n] for n in nets.discriminators}
  (_, (d_terms, stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
  params, opt_state = _update(config, nets, "D", nets.discriminators, state, d_grads)
  metrics = {**metrics, **d_terms, "lr": nets.schedule(state.step)}
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, batch_stats=stats,
                            pools={"fake_A": pool_a, "fake_B": pool_b})
  return new_state, metrics


def train_step_fn(config, nets: Networks, batch_sharding: jax.sharding.Sharding | None = None
                  ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """The step of `config.model`, with config and networks bound (jit it over the mesh with the
  batch sharded by `batch_sharding`, which also places CycleGAN's pooled images)."""
  if config.model == "pix2pix":
    return functools.partial(pix2pix_step, config, nets)
  return functools.partial(cycle_gan_step, config, nets, batch_sharding=batch_sharding)
