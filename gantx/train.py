"""The training loop shared by pix2pix and CycleGAN: `train_and_evaluate(config, workdir)`.

Work directory layout:
  config.json         the resolved config
  params.json         parameter count of every network
  metrics.jsonl       one JSON object per log step (losses, lr, images/s, held-out L1)
  tb/                 TensorBoard events
  samples/*.png       grids input | output | target on the eval set; samples/index.html shows them all
  losses.png          every logged scalar against the step (written when the loop ends or stops)
  checkpoints/<step>/ orbax checkpoints (state, data iterator, config); a run resumes from the latest
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import pathlib
import signal
import threading
import time

import jax
import numpy as np
from tqdm import tqdm

from gantx import allocator, checkpointing, data, evaluate, inception, models, parallel, schedules, state as state_lib, steps, writers
from gantx import config as config_lib

# Errors whose message says all a user needs (a bad image, field, path or checkpoint, a diverged
# run): entry points print the message alone (`-v 1` or a debugger shows the traceback).
USER_ERRORS = (data.BadImageError, FileNotFoundError, FileExistsError, ValueError, FloatingPointError)

# Fields that fix the shapes of the saved state: a checkpoint cannot be loaded under other values.
SHAPE_FIELDS = ("model", "netG", "netD", "n_layers_D", "norm", "ngf", "ndf", "input_nc", "output_nc",
                "crop_size", "crop_width", "pool_size")
# Fields that change what a resumed run computes: refused unless config.allow_config_change.
RESUME_FIELDS = ("batch_size", "direction", "data.source", "data.name", "seed")


def is_due(step: int, every: int, total: int) -> bool:
  """True every `every` steps (counted 1-based) and at the last step."""
  return step == total or (every > 0 and step % every == 0)


def _check_resume_config(config, saved: dict) -> None:
  """Raises ValueError if the saved run's config differs in a field that matters."""
  def diffs(fields):
    out = []
    for field in fields:
      now = config.data[field[5:]] if field.startswith("data.") else config[field]
      before = saved["data"][field[5:]] if field.startswith("data.") else saved[field]
      if now != before:
        out.append(f"{field}: saved {before!r}, now {now!r}")
    return out

  if shape := diffs(SHAPE_FIELDS):
    raise ValueError("The work directory holds a run of another architecture (" + "; ".join(shape) +
                     "); its checkpoints cannot be loaded into this one. Use another --workdir.")
  if (other := diffs(RESUME_FIELDS)) and not config.allow_config_change:
    raise ValueError("The work directory holds a run with a different config (" + "; ".join(other) +
                     "). Use another --workdir, or --config.allow_config_change=True to resume anyway.")


def _log_param_counts(config, state, workdir: pathlib.Path, write: bool) -> dict[str, int]:
  counts = {name: models.count_params(p) for name, p in state.params.items()}
  for name, n in counts.items():
    print(f"[Network {name}] Total number of parameters : {n / 1e6:.3f} M")
  if write:
    (workdir / "params.json").write_text(json.dumps(counts, indent=2))
  return counts


def use_compilation_cache(config) -> None:
  """Points JAX's persistent compilation cache at config.compilation_cache_dir, unless one is
  already set ($JAX_COMPILATION_CACHE_DIR) or the field is empty. Must run before the first compile."""
  if config.compilation_cache_dir and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(config.compilation_cache_dir).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # init compiles ~400 tiny eager ops


def train_and_evaluate(config, workdir: str | pathlib.Path) -> state_lib.TrainState:
  """Trains `config.model` for the configured steps, writing everything under `workdir`."""
  config_lib.validate(config)
  use_compilation_cache(config)
  workdir = pathlib.Path(workdir)
  lead = jax.process_index() == 0
  image_hw = data.train_image_hw(config)  # the one static image shape of the train step
  models.check_image_size(config, *image_hw)
  mesh = parallel.make_mesh()
  per_device = parallel.resolve_batch_size(config, mesh)
  print(f"Data parallel over {mesh.devices.size} devices ({jax.process_count()} processes):"
        f" global batch {config.batch_size}, {per_device} per device.")
  repl, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)

  # Data first: a missing data set fails here, before anything compiles.
  train_iter = data.make_train_iterator(config, process_index=jax.process_index(),
                                        process_count=jax.process_count())
  eval_set = data.make_eval_set(config)
  spe = schedules.steps_per_epoch(data.train_size(config), config.batch_size)
  total = schedules.total_steps(config, spe)

  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
  nets = state_lib.build_networks(config, spe)
  root = jax.random.key(config.seed)
  # Eager, then replicated: compiling init would cost ~15 s at full size for the same values.
  state = parallel.replicate(
      state_lib.init_state(config, nets, jax.random.fold_in(root, 0), image_hw), mesh)
  _log_param_counts(config, state, workdir, lead)

  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", config.max_checkpoints_to_keep)
  start = 0
  restored = ckpt.restore_latest(state, train_iter, functools.partial(_check_resume_config, config))
  if restored is not None:
    start, state = restored
    print(f"Resumed from {ckpt.directory / str(start)} at step {start}.")
  if lead:  # after the resume check: a refused config does not replace the run's record
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

  train_step = jax.jit(steps.train_step_fn(config, nets, batch_sharding), in_shardings=(repl, batch_sharding),
                       out_shardings=(repl, repl), donate_argnums=0)
  translators = {name: evaluate.make_translator(nets.modules[name], config.eval)
                 for name, _, _ in evaluate.directions(config)}
  eval_key = jax.random.fold_in(root, 1)  # the same dropout masks at every evaluation
  fid_variables = inception.load_pt_inception(config.fid_weights) if config.fid_weights else None
  writer = writers.Writer(workdir, enabled=lead)

  def run_eval(step: int) -> dict[str, float]:
    metrics, columns = evaluate.evaluate(config, state.params, state.batch_stats, eval_set, translators, eval_key,
                                         fid_variables)
    for name, cols in columns.items():
      writer.image(step, name, writers.image_grid(cols))
    return metrics

  def flush(step: int) -> dict[str, float]:
    """Means of the metrics since the last flush; stops the run on a non-finite loss."""
    nonlocal pending, window_start
    summary = {k: float(np.mean([m[k] for m in jax.device_get(pending)])) for k in pending[0]}
    bad = [k for k, v in summary.items() if not math.isfinite(v)]
    if bad:
      raise FloatingPointError(f"Non-finite loss {', '.join(bad)} at step {step} (mean of steps"
                               f" {step - len(pending) + 1}..{step}); the last good checkpoint in"
                               f" {ckpt.directory} is kept.")
    summary["images_per_s"] = len(pending) * config.batch_size / (time.perf_counter() - window_start)
    bar.set_postfix({k: f"{v:.3g}" for k, v in summary.items() if k != "lr"})
    pending, window_start = [], time.perf_counter()
    allocator.release_freed_memory()  # the heap of a long run stays near what its steps use
    return summary

  bar = tqdm(total=total, initial=start, disable=not lead, dynamic_ncols=True, desc=config.model)
  if start == 0:
    writer.scalars(0, run_eval(0))
  pending, window_start = [], time.perf_counter()
  try:
    with _stop_requests() as stop:
      for step in range(start + 1, total + 1):
        # No explicit prefetch to devices: train_step is dispatched asynchronously, so this batch is
        # loaded and transferred while the devices still run the previous step (BENCHMARKS.md: 0.5%
        # of a CPU step is spent in next()).
        batch = parallel.global_batch(next(train_iter), batch_sharding)
        state, metrics = train_step(state, batch)
        if step == start + 1:  # compiled (the call returns once dispatched): the compiler's freed memory goes back
          allocator.release_freed_memory()
        pending.append(metrics)
        bar.update(1)
        stopping = bool(stop) and step < total  # preempted: checkpoint now, then return
        logs = {}
        if stopping or is_due(step, config.log_every_steps, total) or is_due(step, config.checkpoint_every_steps, total):
          logs.update(flush(step))
        if is_due(step, config.eval_every_steps, total):
          logs.update(run_eval(step))
        if logs:
          writer.scalars(step, logs)
        if stopping or is_due(step, config.checkpoint_every_steps, total):
          ckpt.save(step, state, train_iter, config)
        if stopping:
          print(f"\nStopped by {stop[0]} after step {step}; checkpoint {ckpt.directory / str(step)} written."
                " Run the same command again to resume.")
          break
    writer.loss_curves()
  finally:  # also on errors: an asynchronous checkpoint save in flight completes
    bar.close()
    ckpt.close()
    writer.close()
  return state


@contextlib.contextmanager
def _stop_requests():
  """Yields a list that receives the name of SIGTERM or SIGINT when one arrives (preemption,
  Ctrl-C): the loop then finishes its step, checkpoints and returns. Handlers are restored after."""
  received: list[str] = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  handler = lambda signum, frame: received.append(signal.Signals(signum).name)
  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)

