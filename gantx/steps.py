"""One pure train step per model, `(state, batch) -> (state, metrics)`, in the official order.

Batches are dicts of NHWC float32 arrays in [-1, 1]: 'A' (the generator input) and 'B'.
Under `jax.jit` over a data mesh the batch is one global array sharded on its first axis,
so every mean (losses, batch-norm statistics) is over the global batch.

All randomness comes from `fold_in(state.key, state.step)`: dropout masks, the pool's
draws and the gradient-penalty interpolation each take their own sub-key. All numbers (learning
rate and its schedule, beta1, the lambdas) come from `state.hparams`, so the compiled step
depends on the `StepSpec` and the networks alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gantx import losses, pool, schedules, state as state_lib
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


class StepSpec(NamedTuple):
  """What a train step runs: the config fields that change its code (with `Networks.modules`, its
  whole static input; the numbers it uses are the state's `hparams`). Two configs with the same
  spec and networks share one compiled step."""
  model: str  # 'pix2pix' (also colorization's step) or 'cycle_gan'
  gan_mode: str  # config.gan_mode
  lr_policy: str  # config.lr_policy
  gan: bool  # lambda_GAN > 0: the discriminators run and train (else the papers' "L1 / cycle alone")
  identity: bool  # cycle_gan with lambda_identity > 0: the identity passes run
  conditional_D: bool  # pix2pix: D sees cat(A, B) (the official cGAN), else B alone

  @classmethod
  def from_config(cls, config) -> StepSpec:
    model = "cycle_gan" if config.model == "cycle_gan" else "pix2pix"  # colorization trains as pix2pix
    return cls(model, config.gan_mode, config.lr_policy, bool(config.lambda_GAN > 0),
               bool(config.model == "cycle_gan" and config.lambda_identity > 0), bool(config.conditional_D))


def discriminator_loss(spec: StepSpec, hparams: dict, critic: Callable[[Array, dict], tuple[Array, dict]],
                       batch_stats: dict, real: Array, fake: Array, *, real_first: bool, key: Array) -> tuple[Array, tuple]:
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
    parts[is_real] = losses.gan_loss(pred, is_real, spec.gan_mode)
  loss = 0.5 * (parts[True] + parts[False])
  if spec.gan_mode == "wgangp":
    # D in train mode, as the official penalty would call it; its statistic update is dropped.
    penalty = losses.gradient_penalty(lambda x: critic(x, batch_stats)[0], real, fake, key)
    loss = loss + hparams["lambda_gp"] * penalty
  return loss, (parts[True], parts[False], batch_stats)


def _update(spec: StepSpec, group: str, names: tuple[str, ...], state: TrainState, grads) -> tuple[dict, Any]:
  """One Adam step of optimizer `group` ('G' or 'D') over nets `names`.

  The arithmetic of `state_lib.optimizer` (optax.adam(schedule, beta1, ADAM_B2, ADAM_EPS), its numbers
  from state.hparams), with the new moments written before the parameters read them. Left to itself XLA fuses the moment
  update into the parameter update; as the state is donated and updated in place, it then
  copies the old parameters and first moments before overwriting them: twice the memory
  traffic of the optimizer (measured: pix2pix batch-1 step 4% slower, 0.2 GiB more peak memory;
  BENCHMARKS.md).
  """
  hp = state.hparams
  params = {n: state.params[n] for n in names}
  old = state.opt_state[group]
  updates, opt_state = state_lib.optimizer(spec.lr_policy, hp).update(grads, old, params)
  if not _is_adam_state(old):
    return {**state.params, **optax.apply_updates(params, updates)}, {**state.opt_state, group: opt_state}
  # Recompute optax's updates from the new moments, behind a barrier (its own are dead code).
  adam, schedule_state = jax.lax.optimization_barrier(opt_state)
  count = adam.count  # already incremented, as optax's bias correction uses it
  bc1 = (1 - hp["beta1"]**count).astype(jnp.float32)
  bc2 = (1 - state_lib.ADAM_B2**count).astype(jnp.float32)
  step_size = -schedules.learning_rate(spec.lr_policy, hp)(old[1].count)  # the count before its increment

  def new_param(p, m, v):
    u = (m / bc1) / (jnp.sqrt(v / bc2 + 0.0) + state_lib.ADAM_EPS)
    return (p + jnp.asarray(step_size, u.dtype) * u).astype(p.dtype)

  new = jax.tree.map(new_param, params, adam.mu, adam.nu)
  return {**state.params, **new}, {**state.opt_state, group: (adam, schedule_state)}


def _is_adam_state(opt_state) -> bool:
  return (isinstance(opt_state, tuple) and len(opt_state) == 2
          and isinstance(opt_state[0], optax.ScaleByAdamState) and isinstance(opt_state[1], optax.ScaleByScheduleState))


def pix2pix_step(spec: StepSpec, nets: Networks, state: TrainState, batch: dict[str, Array]
                 ) -> tuple[TrainState, Metrics]:
  """The official `Pix2PixModel.optimize_parameters`.

  1. fake_B = G(A), once (its VJP is kept for the G step, so G runs forward once).
  2. D on the detached fake pair (target 0), then the real pair (target 1); x0.5; D step.
  3. G through the updated D: lambda_GAN * GAN(D(A, fake_B), 1) + lambda_L1 * |fake_B - B|; G step.
  Without a GAN term (spec.gan False, the paper's "L1"), step 2 and G's GAN term are left out; an
  unconditional D (the paper's "GAN") sees B alone instead of the pair.
  """
  hp = state.hparams
  real_a, real_b = batch["A"], batch["B"]
  k_drop, k_gp = jax.random.split(jax.random.fold_in(state.key, state.step))
  stats = state.batch_stats

  def generate(g_params):
    return apply_net(nets, "G", g_params, stats, real_a, key=k_drop)

  fake_b, g_vjp, stats = jax.vjp(generate, state.params["G"], has_aux=True)

  def critic_with(d_params):
    return lambda x, bs: apply_net(nets, "D", d_params, bs, x)

  def judged(b):
    return jnp.concatenate([real_a, b], -1) if spec.conditional_D else b

  metrics = {}
  params, opt_state = state.params, state.opt_state
  if spec.gan:
    def d_loss_fn(d_params):
      return discriminator_loss(spec, hp, critic_with(d_params), stats, judged(real_b), judged(fake_b),
                                real_first=False, key=k_gp)

    (_, (d_real, d_fake, stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
    params, opt_state = _update(spec, "D", ("D",), state, {"D": d_grads})
    metrics.update(D_real=d_real, D_fake=d_fake)

  def g_loss_fn(fake):
    terms, bs = {"G_L1": hp["lambda_L1"] * losses.l1(fake, real_b)}, stats
    if spec.gan:
      pred, bs = critic_with(params["D"])(judged(fake), stats)
      terms["G_GAN"] = hp["lambda_GAN"] * losses.gan_loss(pred, True, spec.gan_mode, for_discriminator=False)
    return sum(terms.values()), (terms, bs)

  (_, (g_terms, stats)), d_fake_b = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_b)
  (g_grads,) = g_vjp(d_fake_b)
  state = state.replace(params=params, opt_state=opt_state)
  params, opt_state = _update(spec, "G", ("G",), state, {"G": g_grads})
  metrics = {**g_terms, **metrics, "lr": schedules.learning_rate(spec.lr_policy, hp)(state.step)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, batch_stats=stats), metrics


def cycle_gan_step(spec: StepSpec, nets: Networks, state: TrainState, batch: dict[str, Array],
                   batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, Metrics]:
  """The official `CycleGANModel.optimize_parameters`.

  1. fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A); identity
     idt_A = G_A(B), idt_B = G_B(A) when lambda_identity > 0. Loss: lambda_GAN times the
     lsgan/other GAN terms through the current D_A, D_B + cycle L1 (lambda_A, lambda_B) + identity
     L1 (lambda_identity * lambda_B, lambda_identity * lambda_A). One G step over G_A and G_B.
  2. D_A on real B, then pool(fake_B); D_B on real A, then pool(fake_A), with the fakes from
     before the G step; each x0.5; one D step over D_A and D_B.
  Without a GAN term (spec.gan False, the paper's "cycle alone") the discriminators and the pools
  are left out. lambda_A = 0 or lambda_B = 0 leaves one direction's cycle term (the paper's
  "GAN + forward / backward cycle").
  """
  hp = state.hparams
  real_a, real_b = batch["A"], batch["B"]
  keys = jax.random.split(jax.random.fold_in(state.key, state.step), 10)
  lam_a, lam_b, lam_idt = hp["lambda_A"], hp["lambda_B"], hp["lambda_identity"]

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
    if spec.identity:
      terms["idt_A"] = losses.l1(gen("G_A", real_b, 4), real_b) * lam_b * lam_idt
      terms["idt_B"] = losses.l1(gen("G_B", real_a, 5), real_a) * lam_a * lam_idt
    if spec.gan:
      terms["G_A"] = hp["lambda_GAN"] * losses.gan_loss(judge("D_A", fake_b), True, spec.gan_mode,
                                                        for_discriminator=False)
      terms["G_B"] = hp["lambda_GAN"] * losses.gan_loss(judge("D_B", fake_a), True, spec.gan_mode,
                                                        for_discriminator=False)
    terms["cycle_A"] = losses.l1(rec_a, real_a) * lam_a
    terms["cycle_B"] = losses.l1(rec_b, real_b) * lam_b
    return sum(terms.values()), (terms, fake_a, fake_b, bs)

  g_params = {n: state.params[n] for n in nets.generators}
  (_, (metrics, fake_a, fake_b, stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
  params, opt_state = _update(spec, "G", nets.generators, state, g_grads)
  state = state.replace(params=params, opt_state=opt_state, batch_stats=stats)
  lr = schedules.learning_rate(spec.lr_policy, hp)(state.step)
  if not spec.gan:
    return state.replace(step=state.step + 1), {**metrics, "lr": lr}

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
      total[name], (_, _, bs) = discriminator_loss(spec, hp, critic, bs, real, fake, real_first=True, key=key)
    return total["D_A"] + total["D_B"], (total, bs)

  d_params = {n: state.params[n] for n in nets.discriminators}
  (_, (d_terms, stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
  params, opt_state = _update(spec, "D", nets.discriminators, state, d_grads)
  metrics = {**metrics, **d_terms, "lr": lr}
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, batch_stats=stats,
                            pools={"fake_A": pool_a, "fake_B": pool_b})
  return new_state, metrics


def step_fn(spec: StepSpec, nets: Networks, batch_sharding: jax.sharding.Sharding | None = None
            ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """The step of `spec.model` with its spec and networks bound (jit it over the mesh with the batch
  sharded by `batch_sharding`, which also places CycleGAN's pooled images)."""
  if spec.model == "pix2pix":
    return functools.partial(pix2pix_step, spec, nets)
  return functools.partial(cycle_gan_step, spec, nets, batch_sharding=batch_sharding)


def train_step_fn(config, nets: Networks, batch_sharding: jax.sharding.Sharding | None = None
                  ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """`step_fn` of `config`'s spec (`StepSpec.from_config`)."""
  return step_fn(StepSpec.from_config(config), nets, batch_sharding)
