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
