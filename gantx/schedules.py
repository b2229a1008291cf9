"""Learning-rate schedules (official `--lr_policy`), counted in optimizer steps.

The official schedulers step once per epoch; gantx steps the learning rate every optimizer
step, with epochs converted by `steps_per_epoch` (= training-set size // global batch):

- 'linear': lr for the first n_epochs * spe steps, then linear to 0 over
  n_epochs_decay * spe steps (optax.linear_schedule with transition_begin). The official
  2025 code trains epoch e (1-based) at lr * (1 - max(0, e - n_epochs) / (n_epochs_decay + 1)),
  a staircase that is constant within an epoch and ends at lr / (n_epochs_decay + 1).
  Both are constant for n_epochs; during the decay the official value for epoch
  n_epochs + j is lr * (1 - j / (n_epochs_decay + 1)) and gantx's mean over that epoch is
  lr * (1 - (j - 1/2) / n_epochs_decay): the two differ by less than lr / n_epochs_decay.
- 'step': lr * 0.1 ** floor(epoch / lr_decay_iters) (official StepLR(lr_decay_iters, 0.1)).
- 'cosine': cosine from lr to 0 over n_epochs (official CosineAnnealingLR(T_max=n_epochs));
  it stays at 0 afterwards, where the official one would rise again.

The learning rate and the step counts are part of the train state (`state.hparams`), so the
compiled step does not depend on them (`learning_rate`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gantx import config as config_lib

# The schedule's numbers, as the train state carries them (state.hparams): 'lr' (float32) and these
# step counts (int32). They are values, not constants of the compiled step, so one compiled step
# serves any data-set size, epoch count and learning rate (and a study's replicas may differ).
STEP_FIELDS = ("lr_constant_steps", "lr_decay_steps")


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Optimizer steps in one epoch (the last incomplete batch is dropped; at least 1)."""
  return max(1, num_examples // global_batch_size)


def schedule_values(config, spe: int) -> dict[str, np.ndarray]:
  """The step counts of `config.lr_policy` for `spe` steps per epoch (int32 scalars):
  'linear': constant for n_epochs * spe steps, then decay over max(1, n_epochs_decay * spe);
  'step': x0.1 every lr_decay_iters * spe steps ('lr_decay_steps'; the other is unused);
  'cosine': to 0 over max(1, n_epochs * spe) steps ('lr_decay_steps')."""
  policy = config.lr_policy
  if policy == "linear":
    constant, decay = config.n_epochs * spe, max(1, config.n_epochs_decay * spe)
  elif policy == "step":
    constant, decay = 0, config.lr_decay_iters * spe
  elif policy == "cosine":
    constant, decay = 0, max(1, config.n_epochs * spe)
  else:
    raise ValueError(f"config.lr_policy={policy!r} is not one of {config_lib.LR_POLICIES}.")
  return {"lr_constant_steps": np.int32(constant), "lr_decay_steps": np.int32(decay)}


def learning_rate(lr_policy: str, hparams: dict[str, jax.Array]):
  """fn(count) -> the learning rate at optimizer step `count`, for `lr_policy`, from the state's
  'lr' and step counts (`schedule_values`). The formulas are optax's, with these numbers as arrays:
  'linear' = optax.linear_schedule(lr, 0, decay, transition_begin=constant), 'step' =
  optax.exponential_decay(lr, decay, 0.1, staircase=True), 'cosine' =
  optax.cosine_decay_schedule(lr, decay) (tests/test_schedules.py compares them bit for bit)."""
  lr, begin, steps = hparams["lr"], hparams["lr_constant_steps"], hparams["lr_decay_steps"]

  def linear(count):
    count = jnp.clip(count - begin, 0, steps)
    frac = 1 - count / steps
    return (lr - 0.0) * frac + 0.0

  def step(count):
    p = jnp.floor(count / steps)
    decayed = jnp.where(count <= 0, lr, lr * jnp.power(0.1, p))
    return jnp.where(steps <= 0, lr, decayed)  # optax: a constant schedule for transition_steps <= 0

  def cosine(count):
    count = jnp.minimum(jnp.asarray(count, jnp.float32), steps.astype(jnp.float32))
    return lr * ((1 - 0.0) * (0.5 * (1 + jnp.cos(jnp.pi * count / steps))) ** 1.0 + 0.0)

  if lr_policy not in config_lib.LR_POLICIES:
    raise ValueError(f"config.lr_policy={lr_policy!r} is not one of {config_lib.LR_POLICIES}.")
  return {"linear": linear, "step": step, "cosine": cosine}[lr_policy]


def total_steps(config, spe: int) -> int:
  """Steps of the whole run: num_train_steps if set (> 0), else all epochs."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return (config.n_epochs + config.n_epochs_decay) * spe
