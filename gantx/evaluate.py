"""Running a generator at test time, and the held-out metrics logged during training.

Test-time behaviour follows the official test.py. By default (`config.eval=False`, as in
the paper and the official default) the generator runs in train mode on each image alone:
batch norm uses the statistics of that image (the official test batch size is 1) and
dropout is on. With `config.eval=True` (official `--eval`) batch norm uses the running
averages and dropout is off. Neither mode changes the saved batch statistics.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import linen as nn

from gantx import conv, data, models, paths
from gantx.data import builtin, images, lab
from gantx import metrics as metrics_lib

Array = jax.Array


@functools.lru_cache(maxsize=32)  # modules compare by their fields: a later run in this process reuses it
def make_translator(module: nn.Module, eval_mode: bool) -> Callable[[dict, dict, Array, Array], Array]:
  """A jitted fn(params, batch_stats, images (N, H, W, C), keys (N,)) -> translated (N, H, W, C').

  eval_mode=False (the official default): each image runs alone in train mode (batch norm with
  its own statistics, dropout from its key), so results do not depend on how images are batched.
  eval_mode=True (official --eval): running averages, no dropout. The convolutions take
  `conv.INFERENCE_RULES`' forms: no Winograd, within 1e-5 of PyTorch's outputs (BENCHMARKS.md)."""
  module = models.with_rules(module, conv.INFERENCE_RULES)

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
  if config.model != "cycle_gan":  # pix2pix, colorization
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


def evaluate(config, params: dict, batch_stats: dict, eval_set: dict[str, np.ndarray],
             translators: dict[str, Callable], key: Array, fid_variables: dict | None = None,
             ) -> tuple[dict[str, float], dict[str, list[tuple[str, np.ndarray]]]]:
  """Translates the eval set with every generator.

  Args:
    params, batch_stats: net name -> variables (a TrainState's fields, or a restored checkpoint's).
    translators: generator name -> `make_translator(...)`.
    key: dropout key (official test-time mode); translation pass i uses fold_in(key, i): the
      generators' outputs 0, 1, then CycleGAN's reconstructions 2, 3 and identity passes 4, 5.
    fid_variables: FID Inception variables (`inception.load_pt_inception`); None skips FID and KID.
  Returns (metrics, columns). metrics has, for each generator G:
  - `L1_<G>`, `PSNR_<G>`, `SSIM_<G>`, `sharpness_<G>` (means over images; `gantx.metrics`): when
    the eval set is aligned (targets are the true translations); for colorization L1 is of the
    colours (Lab's ab / 110, the model's output) and the others, FID and KID of the RGB images;
  - `FID_<G>`, `KID_<G>`: outputs against the target domain's images, with fid_variables;
  - `class_acc_<G>`: on built-in data, for the generator that draws label maps, the
    per-class accuracy of its output read as labels (nearest palette colour), as the papers'
    photo -> labels FCN score. A uniform or majority-class output scores about 1/6.
  and for CycleGAN, which needs no aligned targets (unpaired test sets have none):
  - `cycle_L1_A` = mean |G_B(G_A(a)) - a|, `cycle_L1_B` = mean |G_A(G_B(b)) - b| (the cycle
    losses without their lambdas);
  - `idt_L1_A` = mean |G_A(b) - b|, `idt_L1_B` = mean |G_B(a) - a| when lambda_identity > 0
    (the identity losses' L1, named as the official idt_A, idt_B).
  columns maps each generator to labelled (N, H, W, C) arrays for a sample grid, as the official
  visuals: real_A, fake_B, [rec_A (CycleGAN)], [real_B (the target, when aligned)].
  """
  def run(name: str, images: np.ndarray, i: int) -> np.ndarray:
    keys = jax.random.split(jax.random.fold_in(key, i), len(images))
    return np.asarray(translators[name](jax.device_get(params[name]), jax.device_get(batch_stats.get(name, {})),
                                        jnp.asarray(images), keys))

  aligned = bool(eval_set["aligned"])
  metrics, columns, outputs, shown_targets = {}, {}, {}, {}
  gens = directions(config)
  for i, (name, src, dst) in enumerate(gens):
    n = len(eval_set[src])
    out = outputs[name] = run(name, eval_set[src], i)
    target = eval_set[dst]
    if aligned and n:
      metrics[f"L1_{name}"] = float(np.mean(metrics_lib.l1(out, target)))  # colorization: in ab
    if config.model == "colorization":  # scored and shown in RGB: the input's lightness with the colours
      out, target = lab.to_rgb(eval_set[src], out), lab.to_rgb(eval_set[src], target)
    if aligned and n:
      metrics[f"PSNR_{name}"] = float(np.mean(np.minimum(metrics_lib.psnr(out, target), 100.0)))
      if min(out.shape[1:3]) >= 11:
        metrics[f"SSIM_{name}"] = float(np.mean(metrics_lib.ssim(out, target)))
      metrics[f"sharpness_{name}"] = float(np.mean(metrics_lib.sharpness(out, target)))
    if fid_variables is not None and n >= 2:
      # On 8-bit images, as pytorch-fid sees the saved PNGs, so the numbers match it.
      fake, real = (metrics_lib.inception_features(fid_variables, images.to_float(images.to_uint8(x)),
                                                   batch_size=min(n, 50)) for x in (out, target))
      metrics[f"FID_{name}"] = metrics_lib.fid(fake, real)
      metrics[f"KID_{name}"] = metrics_lib.kid(fake, real)[0]
    if _targets_labels(config, dst) and out.shape[-1] == 3:
      pred = builtin.labels_from_palette(images.to_uint8(out))
      truth = builtin.labels_from_palette(images.to_uint8(target))
      metrics[f"class_acc_{name}"] = per_class_accuracy(pred, truth, len(builtin.LABEL_PALETTE))
    columns[name] = [(f"real_{src}", eval_set[src]), (f"fake_{dst}", out)]
    shown_targets[name] = target
  if config.model == "cycle_gan":
    for i, (name, src, dst) in enumerate(gens):
      back = gens[1 - i][0]  # G_B for G_A's outputs, G_A for G_B's
      if len(eval_set[src]):
        rec = run(back, outputs[name], 2 + i)
        metrics[f"cycle_L1_{src}"] = float(np.mean(metrics_lib.l1(rec, eval_set[src])))
        columns[name].append((f"rec_{src}", rec))
      if config.lambda_identity > 0 and len(eval_set[dst]):
        idt = run(name, eval_set[dst], 4 + i)  # G_A(b) ~ b: the official idt_A
        metrics[f"idt_L1_{src}"] = float(np.mean(metrics_lib.l1(idt, eval_set[dst])))
  if aligned:
    for name, src, dst in gens:
      columns[name].append((f"real_{dst}", shown_targets[name]))
  return metrics, columns


def column_titles(columns: list[tuple[str, np.ndarray]]) -> list[str]:
  """Titles of a generator's labelled columns: input, output, [reconstruction], [target]."""
  titles = {"fake": "output", "rec": "reconstruction", "real": "target"}
  return ["input"] + [titles[label.split("_")[0]] for label, _ in columns[1:]]


def no_metric_reason(config, eval_set: dict[str, np.ndarray]) -> str:
  """Why an evaluation measured nothing (for the evaluation line)."""
  if not len(eval_set["A"]):
    return "the test set is empty"
  return ("the test set has no aligned targets (an unpaired or single-image test set): L1, PSNR and SSIM need"
          " true translations; give config.fid_weights for FID and KID")


def evaluate_run(workdir: str | os.PathLike, output: str | os.PathLike | None = None, *, step: int | None = None,
                 num_test: int = 50, fid_weights: str | None = None, eval_mode: bool | None = None,
                 replica: int | None = None) -> tuple[dict[str, float], epath.Path]:
  """Evaluates a run's checkpoint (or replica `replica` of a seed study's) on the first `num_test`
  test images (official --num_test 50; fewer when the test set is smaller: metrics['num_test']).

  Writes `<output>/metrics.json` and `<output>/index.html` with the official test.py's images:
  images/<i>_real_A.png, <i>_fake_B.png, then CycleGAN's <i>_rec_A.png and the B->A ones, and
  <i>_real_B.png where the test set is aligned (its targets).
  `output` defaults to `<workdir>/eval/<step>` (a study's: `<workdir>/replica_<k>/eval/<step>`).
  Returns (metrics, output).
  """
  from gantx import checkpointing, inception, seeds, state as state_lib, writers  # pylint: disable=g-import-not-at-top

  config, step, state = checkpointing.load_run(workdir, step, replica)
  if eval_mode is not None:
    config.eval = eval_mode
  config.num_eval_images = num_test
  fid_variables = inception.load_pt_inception(fid_weights) if fid_weights else None
  eval_set = data.make_eval_set(config)
  nets = state_lib.build_networks(config, 1)
  translators = {name: make_translator(nets.modules[name], config.eval) for name, _, _ in directions(config)}
  key = seeds.eval_key(seeds.from_config(config))  # the training loop's eval key
  metrics, columns = evaluate(config, state["params"], state["batch_stats"], eval_set, translators, key, fid_variables)
  metrics = {"step": step, "num_test": len(eval_set["A"]), "eval": bool(config.eval), **metrics}

  run_dir = paths.path(workdir) / (f"replica_{replica}" if replica is not None else "")
  output = paths.path(output) if output is not None else run_dir / "eval" / str(step)
  paths.check_bucket(output, "--output")
  (output / "images").mkdir(parents=True, exist_ok=True)
  (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
  rows = []
  for name, _, _ in directions(config):
    for i in range(len(columns[name][0][1])):
      cells = []
      for label, column in columns[name]:
        rel = f"images/{i:04d}_{label}.png"
        writers.save_image(column[i], output / rel)
        cells.append(rel)
      rows.append((f"{i:04d} {name}", cells))
  summary = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
  writers.html_table(output / "index.html", f"{paths.path(workdir).name} step {step}: {summary}",
                     column_titles(next(iter(columns.values()))), rows)
  return metrics, output
