"""Running a generator at test time, and the held-out metrics logged during training.

Test-time behaviour follows the official test.py. By default (`config.eval=False`, as in
the paper and the official default) the generator runs in train mode on each image alone:
batch norm uses the statistics of that image (the official test batch size is 1) and
dropout is on. With `config.eval=True` (official `--eval`) batch norm uses the running
averages and dropout is off. Neither mode changes the saved batch statistics.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from gantx import data
from gantx.state import Networks, TrainState

Array = jax.Array


def make_translator(module: nn.Module, eval_mode: bool) -> Callable[[dict, dict, Array, Array], Array]:
  """A jitted fn(params, batch_stats, images (N, H, W, C), keys (N,)) -> translated (N, H, W, C').

  eval_mode=False (the official default): each image runs alone in train mode (batch norm with
  its own statistics, dropout from its key), so results do not depend on how images are batched.
  eval_mode=True (official --eval): running averages, no dropout."""

  def one(params, stats, image, key):
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    out = module.apply(variables, image[None], train=True, rngs={"dropout": key},
                       mutable=["batch_stats"] if stats else False)
    return (out[0] if stats else out)[0]

  @jax.jit
  def translate(params, stats, images, keys):
    if eval_mode:
      variables = {"params": params, **({"batch_stats": stats} if stats else {})}
      return module.apply(variables, images, train=False)
    return jax.vmap(one, in_axes=(None, None, 0, 0))(params, stats, images, keys)

  return translate


def directions(config) -> list[tuple[str, str, str]]:
  """(generator, input key, target key) for each translation the model learns."""
  if config.model == "pix2pix":
    return [("G", "A", "B")]
  return [("G_A", "A", "B"), ("G_B", "B", "A")]


def per_class_accuracy(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
  """Mean over the classes present in `truth` of the share of their pixels labelled right
  (the "per-class acc." of the pix2pix and CycleGAN papers' FCN scores)."""
  recalls = [np.mean(pred[truth == c] == c) for c in range(num_classes) if np.any(truth == c)]
  return float(np.mean(recalls))


def _targets_labels(config, target_key: str) -> bool:
  """On built-in data, whether `target_key` of the eval set holds label maps (domain A before
  `direction` swaps the sides)."""
  return config.data.source == "builtin" and (target_key == "A") == (config.direction == "AtoB")


def evaluate(config, nets: Networks, state: TrainState, eval_set: dict[str, np.ndarray],
             translators: dict[str, Callable], key: Array) -> tuple[dict[str, float], dict[str, list[np.ndarray]]]:
  """Translates the eval set with every generator.

  Returns (metrics, columns). metrics has, for each generator G:
  - `L1_<G>`: mean |G(x) - target| in [-1, 1] units, when the eval set is aligned (targets
    are the true translations);
  - `class_acc_<G>`: on built-in data, for the generator that draws label maps, the
    per-class accuracy of its output read as labels (nearest palette colour), as the papers'
    photo -> labels FCN score. A uniform or majority-class output scores about 1/6.
  columns maps each generator to [input, output, target] arrays for a sample grid.
  """
  metrics, columns = {}, {}
  for i, (name, src, dst) in enumerate(directions(config)):
    params = jax.device_get(state.params[name])
    stats = jax.device_get(state.batch_stats.get(name, {}))
    out = np.asarray(translators[name](params, stats, jnp.asarray(eval_set[src]),
                                         jax.random.split(jax.random.fold_in(key, i), len(eval_set[src]))))
    if bool(eval_set["aligned"]):
      metrics[f"L1_{name}"] = float(np.mean(np.abs(out - eval_set[dst])))
    if _targets_labels(config, dst) and out.shape[-1] == 3:
      pred = data.labels_from_palette(data.to_uint8(out))
      truth = data.labels_from_palette(data.to_uint8(eval_set[dst]))
      metrics[f"class_acc_{name}"] = per_class_accuracy(pred, truth, len(data.LABEL_PALETTE))
    columns[name] = [eval_set[src], out, eval_set[dst]]
  return metrics, columns
