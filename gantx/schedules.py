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
"""

from __future__ import annotations

import optax

from gantx import config as config_lib


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Optimizer steps in one epoch (the last incomplete batch is dropped; at least 1)."""
  return max(1, num_examples // global_batch_size)


def learning_rate(config, spe: int) -> optax.Schedule:
  """The schedule named by `config.lr_policy`, for `spe` steps per epoch."""
  if config.lr_policy == "linear":
    return optax.linear_schedule(
        config.lr, 0.0, transition_steps=max(1, config.n_epochs_decay * spe),
        transition_begin=config.n_epochs * spe)
  if config.lr_policy == "step":
    return optax.exponential_decay(
        config.lr, transition_steps=config.lr_decay_iters * spe, decay_rate=0.1, staircase=True)
  if config.lr_policy == "cosine":
    return optax.cosine_decay_schedule(config.lr, decay_steps=max(1, config.n_epochs * spe))
  raise ValueError(f"config.lr_policy={config.lr_policy!r} is not one of {config_lib.LR_POLICIES}.")


def total_steps(config, spe: int) -> int:
  """Steps of the whole run: num_train_steps if set (> 0), else all epochs."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return (config.n_epochs + config.n_epochs_decay) * spe
