"""Held-out metrics."""

import numpy as np
import pytest

from gantx import evaluate


def test_per_class_accuracy_by_hand():
  truth = np.array([0, 0, 0, 1, 1, 2])
  pred = np.array([0, 0, 1, 1, 0, 0])
  # class 0: 2/3, class 1: 1/2, class 2: 0/1
  assert evaluate.per_class_accuracy(pred, truth, 4) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
  assert evaluate.per_class_accuracy(np.zeros(6, int), truth, 4) == pytest.approx(1 / 3)


def test_an_evaluation_that_measured_nothing_is_said_and_plotted_as_such(tmp_path):
  """An unpaired test set has no targets: a run's first record can then be the step alone. The live
  losses plot draws what there is (nothing yet: no file), then the losses once they exist."""
  from gantx import train as train_lib, writers
  out = writers.Writer(tmp_path)
  out.scalars(0, {})
  assert out.loss_curves() is None and not (tmp_path / "losses.png").exists()
  out.scalars(2, {"G_GAN": 1.0, "cycle_L1_A": 0.4})
  assert out.loss_curves() is None  # single points: no curve yet
  out.scalars(4, {"G_GAN": 0.9, "cycle_L1_A": 0.3})
  assert out.loss_curves() is not None and (tmp_path / "losses.png").stat().st_size > 1000
  out.close()
  assert train_lib._metric_line([{}], "the reason") == "no held-out metric: the reason."
  assert train_lib._metric_line([{"cycle_L1_A": 0.25}], "unused") == "cycle_L1_A 0.25"
