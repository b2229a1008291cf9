"""Learning-rate schedules at their boundary steps."""

import pytest

from gantx import schedules
from gantx.config import base_config


def _schedule(**kw):
  c = base_config()
  c.update(kw)
  return schedules.learning_rate(c, spe=10)


def test_linear_is_constant_then_decays_to_zero():
  lr = _schedule(lr=2e-4, n_epochs=2, n_epochs_decay=3, lr_policy="linear")
  for step in (0, 10, 19, 20):
    assert float(lr(step)) == pytest.approx(2e-4)
  assert float(lr(35)) == pytest.approx(1e-4)  # half way through the 30 decay steps
  assert float(lr(49)) == pytest.approx(2e-4 / 30)  # the last step trains at lr / decay_steps
  assert float(lr(50)) == 0.0 and float(lr(60)) == 0.0


def test_step_policy_divides_by_ten_every_lr_decay_iters_epochs():
  lr = _schedule(lr=1.0, lr_policy="step", lr_decay_iters=2)
  assert [float(lr(s)) for s in (0, 19, 20, 39, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_cosine_reaches_zero_after_n_epochs():
  lr = _schedule(lr=1.0, lr_policy="cosine", n_epochs=4)
  assert [float(lr(s)) for s in (0, 20, 40, 50)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-6)


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
