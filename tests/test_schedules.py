"""Learning-rate schedules at their boundary steps, and equal to optax's schedules bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gantx import schedules
from gantx.config import base_config


def _schedule(**kw):
  c = base_config()
  c.update(kw)
  hparams = {"lr": jnp.float32(c.lr), **schedules.schedule_values(c, spe=10)}
  return jax.jit(schedules.learning_rate(c.lr_policy, hparams))


def test_linear_is_constant_then_decays_to_zero():
  lr = _schedule(lr=2e-4, n_epochs=2, n_epochs_decay=3, lr_policy="linear")
  for step in (0, 10, 19, 20):
    assert float(lr(step)) == pytest.approx(2e-4)
  assert float(lr(35)) == pytest.approx(1e-4)  # half way through the 30 decay steps
  assert float(lr(49)) == pytest.approx(2e-4 / 30, rel=1e-5)  # the last step trains at lr / decay_steps
  # 0 up to float32 rounding: compiled, XLA may divide by multiplying with the reciprocal, which
  # leaves 1 - 30/30 a few ulp from 0 (optax's compiled schedule gives the same value).
  assert abs(float(lr(50))) < 1e-10 and abs(float(lr(60))) < 1e-10


def test_step_policy_divides_by_ten_every_lr_decay_iters_epochs():
  lr = _schedule(lr=1.0, lr_policy="step", lr_decay_iters=2)
  assert [float(lr(s)) for s in (0, 19, 20, 39, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_cosine_reaches_zero_after_n_epochs():
  lr = _schedule(lr=1.0, lr_policy="cosine", n_epochs=4)
  assert [float(lr(s)) for s in (0, 20, 40, 50)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("policy,optax_schedule", [
    ("linear", lambda c, spe: optax.linear_schedule(c.lr, 0.0, transition_steps=max(1, c.n_epochs_decay * spe),
                                                    transition_begin=c.n_epochs * spe)),
    ("step", lambda c, spe: optax.exponential_decay(c.lr, transition_steps=c.lr_decay_iters * spe, decay_rate=0.1,
                                                    staircase=True)),
    ("cosine", lambda c, spe: optax.cosine_decay_schedule(c.lr, decay_steps=max(1, c.n_epochs * spe))),
])
def test_the_state_driven_schedules_equal_optax_bitwise(policy, optax_schedule):
  """The schedules read their numbers from the train state; their values are optax's schedules
  built from the same numbers as constants, bit for bit, at every step of a run (and beyond)."""
  c = base_config()
  c.update(dict(lr=2e-4, n_epochs=3, n_epochs_decay=4, lr_decay_iters=2, lr_policy=policy))
  counts = jnp.arange(0, 100, dtype=jnp.int32)
  ours = jax.jit(jax.vmap(lambda n: _schedule(**c)(n)))(counts)
  theirs = jax.jit(jax.vmap(optax_schedule(c, 10)))(counts)
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_steps_per_epoch_and_total():
  assert schedules.steps_per_epoch(400, 4) == 100
  assert schedules.steps_per_epoch(3, 4) == 1
  c = base_config()
  c.n_epochs, c.n_epochs_decay = 100, 100
  assert schedules.total_steps(c, 400) == 80_000
  c.num_train_steps = 7
  assert schedules.total_steps(c, 400) == 7


def test_unknown_policy_names_the_field():
  with pytest.raises(ValueError, match="config.lr_policy='plateau'"):
    _schedule(lr_policy="plateau")
