"""The training loop shared by pix2pix and CycleGAN, by single runs and seed studies.

`train_and_evaluate(config, workdir)` trains one run; `gantx.study` runs the same loop over N
replicas of the state (`run(..., replicas=seed sets)`).

Work directory layout of a run:
  config.json         the resolved config
  params.json         parameter count of every network
  metrics.jsonl       one JSON object per log step (losses, lr, images/s, held-out metrics)
  tb/                 TensorBoard events
  samples/*.png       grids input | output | target on the eval set; samples/index.html shows them all
  losses.png          every logged scalar against the step (rewritten at every evaluation)
  checkpoints/<step>/ orbax checkpoints (state, data iterator, config, log window); a run resumes
                      from the latest
A study's work directory has config.json, params.json and checkpoints/ (the replicas' states
stacked), its seeds in seeds.json, and each replica's metrics.jsonl, tb/, samples/ and losses.png
in replica_<k>/.

The loop keeps at most MAX_IN_FLIGHT steps dispatched beyond the last finished one: a step's
metrics are read back (which waits for it) before the step two later is dispatched. So the
progress bar counts finished steps, and SIGTERM or Ctrl-C is followed by at most MAX_IN_FLIGHT
more steps and a checkpoint; a second signal exits at once (the last complete checkpoint stays).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gantx import allocator, checkpointing, data, evaluate, inception, models, parallel, paths, schedules, seeds as seeds_lib
from gantx import conv as conv_lib
from gantx import state as state_lib, steps, watchdog as watchdog_lib, writers
from gantx import config as config_lib

# Errors whose message says all a user needs (a bad image, field, path or checkpoint, a diverged
# run): entry points print the message alone (`-v 1` or a debugger shows the traceback).
USER_ERRORS = (data.BadImageError, FileNotFoundError, FileExistsError, ValueError, FloatingPointError,
               parallel.PeerTimeoutError)

# Fields that fix the shapes of the saved state: a checkpoint cannot be loaded under other values.
SHAPE_FIELDS = ("model", "netG", "netD", "n_layers_D", "norm", "ngf", "ndf", "input_nc", "output_nc",
                "crop_size", "crop_width", "pool_size")
# Fields that change what a resumed run computes: refused unless config.allow_config_change.
RESUME_FIELDS = ("batch_size", "direction", "data.source", "data.name", "seed", "init_seed", "data_seed", "step_seed")
# Steps dispatched beyond the last finished one (the host runs ahead of the devices by this much).
MAX_IN_FLIGHT = 2


def is_due(step: int, every: int, total: int) -> bool:
  """True every `every` steps (counted 1-based) and at the last step."""
  return step == total or (every > 0 and step % every == 0)


def epoch_of(step: int, spe: int) -> int:
  """The 1-based epoch that optimizer step `step` (1-based) belongs to; 0 before training."""
  return -(-step // spe)


def _check_resume_config(config, saved: dict) -> None:
  """Raises ValueError if the saved run's config differs in a field that matters."""
  def diffs(fields):
    out = []
    for field in fields:
      now = config.data[field[5:]] if field.startswith("data.") else config.get(field)
      before = saved["data"].get(field[5:]) if field.startswith("data.") else saved.get(field)
      if now != before:
        out.append(f"{field}: saved {before!r}, now {now!r}")
    return out

  if shape := diffs(SHAPE_FIELDS):
    raise ValueError("The work directory holds a run of another architecture (" + "; ".join(shape) +
                     "); its checkpoints cannot be loaded into this one. Use another --workdir.")
  if (other := diffs(RESUME_FIELDS)) and not config.allow_config_change:
    raise ValueError("The work directory holds a run with a different config (" + "; ".join(other) +
                     "). Use another --workdir, or --config.allow_config_change=True to resume anyway.")


def _log_param_counts(params: dict) -> dict[str, int]:
  counts = {name: models.count_params(p) for name, p in params.items()}
  for name, n in counts.items():
    print(f"[Network {name}] Total number of parameters : {n / 1e6:.3f} M")
  return counts


def use_compilation_cache(config) -> None:
  """Points JAX's persistent compilation cache at config.compilation_cache_dir, unless one is
  already set ($JAX_COMPILATION_CACHE_DIR) or the field is empty. Must run before the first compile."""
  if config.compilation_cache_dir and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(config.compilation_cache_dir).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # init compiles ~400 tiny eager ops


def train_and_evaluate(config, workdir: str | os.PathLike) -> state_lib.TrainState:
  """Trains `config.model` for the configured steps, writing everything under `workdir`."""
  if checkpointing.read_study(workdir) is not None:
    raise ValueError(f"{workdir} is a seed study's work directory ({checkpointing.STUDY_FILE}): continue it with"
                     " `python -m gantx study`, or take one replica out as a run with `python -m gantx study extract`.")
  return run(config, workdir)


def _compact(summary: dict[str, float]) -> str:
  """The progress bar's losses, short: A/B pairs side by side ('D .259/.195'), 3 digits, images/s."""
  def fmt(v):
    text = f"{v:.3g}"
    return text[1:] if text.startswith("0.") else text.replace("-0.", "-.")

  parts, done = [], set()
  for k, v in summary.items():
    if k in done or k in ("lr", "images_per_s"):
      continue
    twin = k[:-1] + "B" if k.endswith("_A") else None
    if twin in summary:
      parts.append(f"{k[:-2]} {fmt(v)}/{fmt(summary[twin])}")
      done.add(twin)
    else:
      parts.append(f"{k} {fmt(v)}")
  if "images_per_s" in summary:
    parts.append(f"{summary['images_per_s']:.3g} img/s")
  return " ".join(parts)


def _metric_line(values: list[dict[str, float]], why_none: str) -> str:
  """'L1_G 0.1053  PSNR_G 21.36' (one replica), or the mean +- std over the replicas; `why_none`
  when the evaluation measured nothing."""
  keys = [k for k in values[0] if isinstance(values[0][k], float)]
  if not keys:
    return f"no held-out metric: {why_none}."
  if len(values) == 1:
    return "  ".join(f"{k} {values[0][k]:.4g}" for k in keys)
  stats = {k: np.array([v[k] for v in values]) for k in keys}
  return "  ".join(f"{k} {s.mean():.4g} +- {s.std(ddof=1):.2g}" for k, s in stats.items()) + f" ({len(values)} replicas)"


def initial_state(config, nets: state_lib.Networks, replicas: list[seeds_lib.Seeds] | None,
                  image_hw: tuple[int, int], mesh) -> state_lib.TrainState:
  """A fresh state placed on `mesh`: a run's (replicas=None, seeds from the config), replicated; or
  a study's, one per seed set stacked on a leading axis sharded over 'seeds'. Built eagerly:
  compiling init would cost ~15 s at full size for the same values."""
  def init(seeds: seeds_lib.Seeds) -> state_lib.TrainState:
    key, run_key = seeds_lib.state_keys(seeds)
    return state_lib.init_state(config, nets, key, image_hw, run_key=run_key)

  if replicas is None:
    return parallel.place(init(seeds_lib.from_config(config)), parallel.replicated(mesh))
  states = [init(s) for s in replicas]
  return parallel.place(jax.tree.map(lambda *xs: jnp.stack(xs), *states), parallel.replica_sharding(mesh))


def jitted_step(config, nets: state_lib.Networks, mesh, study: bool = False, shared_data: bool = True):
  """(the jitted, donating train step over `mesh`, the batch sharding it takes).

  A run's step takes the replicated state and a batch split over 'data'. A study's is the same
  step under `jax.vmap` over the replica axis (sharded over 'seeds'): with `shared_data` one batch
  for every replica (replicated over 'seeds'), else one per replica, shape (replicas, batch, ...);
  its convolutions take `conv.STUDY_RULES`' forms (the same numbers up to rounding).
  """
  if study:  # no grouped convolutions under vmap (conv.STUDY_RULES)
    nets = nets._replace(modules={n: models.with_rules(m, conv_lib.STUDY_RULES) for n, m in nets.modules.items()})
  step_fn = steps.train_step_fn(config, nets, parallel.batch_sharding(mesh))
  state_sharding, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  if study:
    step_fn = jax.vmap(step_fn, in_axes=(0, None if shared_data else 0), spmd_axis_name=parallel.SEEDS_AXIS)
    state_sharding = parallel.replica_sharding(mesh)
    if not shared_data:
      batch_sharding = parallel.replica_batch_sharding(mesh)
  step = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, state_sharding),
                 donate_argnums=0)
  return step, batch_sharding


def run(config, workdir: str | os.PathLike, replicas: list[seeds_lib.Seeds] | None = None,
        on_eval: Callable[[int], None] | None = None) -> state_lib.TrainState:
  """The loop: a run (`replicas=None`), or a study of len(replicas) replicas whose state has a
  leading replica axis and whose step is the run's step under `jax.vmap`.

  Each replica k uses the seed streams `replicas[k]` (`gantx.seeds`); replicas that share the
  data seed share one data stream, loaded once. `on_eval(step)` runs on process 0 after every
  evaluation has been written (the study's report).
  """
  config_lib.validate(config)
  parallel.prepare_processes()  # before anything compiles (also where jax.distributed started elsewhere)
  use_compilation_cache(config)
  workdir = paths.check_workdir(workdir)  # a local path or gs://, in a bucket that exists
  lead = jax.process_index() == 0
  study = replicas is not None
  seed_sets = list(replicas) if study else [seeds_lib.from_config(config)]
  n = len(seed_sets)
  image_hw = data.train_image_hw(config)  # the one static image shape of the train step
  models.check_image_size(config, *image_hw)
  mesh = parallel.make_study_mesh(n) if study else parallel.make_mesh()
  per_device = parallel.resolve_batch_size(config, mesh)
  if study:
    seeds_axis = mesh.shape[parallel.SEEDS_AXIS]
    print(f"Study of {n} replicas over {mesh.devices.size} devices ({jax.process_count()} processes): mesh seeds"
          f" {seeds_axis} x data {mesh.shape[parallel.DATA_AXIS]}, {max(1, n // seeds_axis)} replicas per device;"
          f" global batch {config.batch_size} per replica, {per_device} per device.")
  else:
    print(f"Data parallel over {mesh.devices.size} devices ({jax.process_count()} processes):"
          f" global batch {config.batch_size}, {per_device} per device.")

  # Data first: a missing data set fails here, before anything compiles. Replicas with one data
  # seed read one stream. A study's process loads whole global batches (see next_batch).
  shared_data = len({s.data for s in seed_sets}) == 1
  streams = seed_sets[:1] if shared_data else seed_sets
  if study:
    iterators = [data.make_train_iterator(seeds_lib.with_seeds(config, s)) for s in streams]
  else:
    iterators = [data.make_train_iterator(config, process_index=jax.process_index(),
                                          process_count=jax.process_count())]
  eval_set = data.make_eval_set(config)
  spe = schedules.steps_per_epoch(data.train_size(config), config.batch_size)
  total = schedules.total_steps(config, spe)
  epochs = epoch_of(total, spe)

  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
  nets = state_lib.build_networks(config, spe)
  state = initial_state(config, nets, seed_sets if study else None, image_hw, mesh)
  counts = _log_param_counts(jax.tree.map(lambda x: x[0], state.params) if study else state.params)

  # Hosts load and check their data at different speeds: meet before the first collective (orbax's).
  parallel.barrier("start", config.peer_timeout_s)
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", config.max_checkpoints_to_keep, len(iterators))
  start, saved_log = 0, None
  restored = ckpt.restore_latest(state, iterators, lambda saved: _check_resume_config(config, saved))
  if restored is not None:
    start, state, saved_log = restored
    print(f"Resumed from {ckpt.directory / str(start)} at step {start}.")
  if lead:  # after the resume check: a refused config does not replace the run's record
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    (workdir / "params.json").write_text(json.dumps(counts, indent=2))

  train_step, batch_sharding = jitted_step(config, nets, mesh, study, shared_data)

  def next_batch():
    if not study:  # this process's rows of the global batch
      return parallel.global_batch(next(iterators[0]), batch_sharding)
    hosts = [next(it) for it in iterators]  # whole global batches, every process
    host = hosts[0] if shared_data else {k: np.stack([h[k] for h in hosts]) for k in hosts[0]}
    return parallel.place(host, batch_sharding)

  translators = {name: evaluate.make_translator(nets.modules[name], config.eval)
                 for name, _, _ in evaluate.directions(config)}
  eval_keys = [seeds_lib.eval_key(s) for s in seed_sets]  # the same dropout masks at every evaluation
  fid_variables = inception.load_pt_inception(config.fid_weights) if config.fid_weights else None
  run_dirs = [workdir / f"replica_{k}" for k in range(n)] if study else [workdir]
  outs = [writers.Writer(d, enabled=lead) for d in run_dirs]

  def view(tree, k):
    return jax.tree.map(lambda x: x[k], tree) if study else tree

  def run_eval(step: int) -> list[dict[str, float]]:
    params, stats = jax.device_get((state.params, state.batch_stats))
    results = []
    for k, out in enumerate(outs):
      metrics, columns = evaluate.evaluate(config, view(params, k), view(stats, k), eval_set, translators,
                                           eval_keys[k], fid_variables)
      for name, cols in columns.items():
        out.image(step, name, writers.image_grid([c for _, c in cols]), evaluate.column_titles(cols))
      results.append(metrics)
    return results

  # Per replica, the finished steps' losses since the last logged window: (step, {name: float32}).
  window: list[list[tuple[int, dict]]] = [[] for _ in range(n)]
  if saved_log is not None:
    window = [[(s, {k: np.float32(v) for k, v in row.items()}) for s, row in rows] for rows in saved_log["window"]]
  inflight: collections.deque = collections.deque()  # (step, metrics on the devices)
  waiting: dict[int, list[dict]] = {}  # step -> window means held back for that step's evaluation
  clock = {"start": time.perf_counter(), "steps": 0}  # images/s over the window's steps in this process
  done = [start]  # the last finished step
  bar = None

  def log_record(step: int, values: list[dict]) -> None:
    for out, v in zip(outs, values):
      out.scalars(step, v)

  def close_window(step: int) -> list[dict]:
    """Means of each replica's window (its steps since the last log step) and images/s."""
    rate = clock["steps"] * config.batch_size / max(time.perf_counter() - clock["start"], 1e-9)
    means = []
    for rows in window:
      means.append({k: float(np.mean([r[k] for _, r in rows])) for k in rows[0][1]} | {"images_per_s": rate})
      rows.clear()
    clock.update(start=time.perf_counter(), steps=0)
    bar.set_postfix_str(_compact({k: float(np.mean([m[k] for m in means])) for k in means[0]}))
    return means

  def finish(upto: int) -> None:
    """Reads back the metrics of every dispatched step <= upto (waiting for them): checks them,
    adds them to the window, advances the bar, and logs at the log steps."""
    while inflight and inflight[0][0] <= upto:
      step, metrics = inflight[0]
      values = jax.device_get(metrics)  # waits for the step
      inflight.popleft()
      for k in range(n):
        row = {name: v[k] if study else v for name, v in values.items()}
        if bad := [name for name, v in row.items() if not math.isfinite(float(v))]:
          who = f" in replica {k} (seeds {seed_sets[k]})" if study else ""
          raise FloatingPointError(f"Non-finite loss {', '.join(bad)} at step {step}{who}; the last good"
                                   f" checkpoint in {ckpt.directory} is kept.")
        window[k].append((step, row))
      clock["steps"] += 1
      done[0] = step
      dog.beat()
      bar.update(1)
      if epoch_of(step, spe) != epoch_of(step - 1, spe):
        bar.set_description(f"{config.model} epoch {epoch_of(step, spe)}/{epochs}")
      if is_due(step, config.log_every_steps, total):
        means = close_window(step)
        if is_due(step, config.eval_every_steps, total):
          waiting[step] = means  # written with the evaluation of this step
        else:
          log_record(step, means)

  def evaluation(step: int) -> None:
    with dog.paused():
      _evaluation(step)

  def _evaluation(step: int) -> None:
    results = run_eval(step)
    log_record(step, [{**w, **r} for w, r in zip(waiting.pop(step, [{}] * n), results)])
    if lead:
      say = tqdm.write if bar is not None else print
      line = _metric_line(results, evaluate.no_metric_reason(config, eval_set))
      say(f"step {step} (epoch {epoch_of(step, spe)}/{epochs}): {line}")
      for out in outs:
        out.loss_curves()
      if on_eval is not None:
        on_eval(step)

  def save(step: int) -> None:
    log = {"window": [[[s, {k: float(v) for k, v in row.items()}] for s, row in rows] for rows in window]}
    with dog.paused():
      ckpt.save(step, state, iterators, config, log=log)
    saved[0] = step

  def waiting_for() -> str:
    """What the loop waits for (the watchdog's message)."""
    what = (f"step {inflight[0][0]} to finish (dispatched: steps {inflight[0][0]}-{inflight[-1][0]})" if inflight
            else f"the data of step {done[0] + 1}")
    return f"{what}; the last checkpoint is {ckpt.directory / str(saved[0])}" if saved[0] is not None else what

  saved = [start if restored is not None else None]  # the last checkpoint written or resumed from
  dog = watchdog_lib.Watchdog(0, waiting_for)  # armed once the steps start

  last, stopped = start, None
  try:
    with _stop_requests(lambda: done[0]) as stop:
      if start < total:
        batch = next_batch()
        print("Compiling the train step (cached for later runs)...", end=" ", flush=True)
        began = time.perf_counter()
        compiled = train_step.lower(state, batch).compile()
        print(f"done in {time.perf_counter() - began:.1f} s.", flush=True)
        if start == 0:
          evaluation(0)
        parallel.barrier("first step", config.peer_timeout_s)  # compile and evaluation times differ by host
        dog = watchdog_lib.Watchdog(config.step_timeout_s, waiting_for)
        bar = tqdm(total=total, initial=start, disable=not lead, dynamic_ncols=True,
                   desc=f"{config.model} epoch {max(1, epoch_of(start, spe))}/{epochs}")
        clock["start"] = time.perf_counter()
        for step in range(start + 1, total + 1):
          finish(step - MAX_IN_FLIGHT)  # at most MAX_IN_FLIGHT steps in flight after this dispatch
          if stop:  # checked after the wait: a signal during it must not let one more step in
            break
          if batch is None:
            batch = next_batch()
          state, metrics = compiled(state, batch)
          batch, last = None, step
          inflight.append((step, metrics))
          if step == start + 1:  # compiled and dispatched: the compiler's freed memory goes back
            allocator.release_freed_memory()
          if is_due(step, config.eval_every_steps, total) or is_due(step, config.checkpoint_every_steps, total):
            finish(step)
          if is_due(step, config.eval_every_steps, total):
            evaluation(step)
          if is_due(step, config.checkpoint_every_steps, total):
            save(step)
          if is_due(step, config.log_every_steps, total):
            allocator.release_freed_memory()  # the heap of a long run stays near what its steps use
        finish(last)
        if stop and last < total:
          stopped = stop[0]
          if ckpt.latest_step() != last:
            save(last)
          ckpt.wait()
          if lead:  # the last evaluation, which plots, did not come
            for out in outs:
              out.loss_curves()
  finally:  # also on errors: an asynchronous checkpoint save in flight completes
    dog.close()
    if bar is not None:
      bar.close()
    ckpt.close()
    for out in outs:
      out.close()
  if stopped is not None:
    name, when = stopped
    print(f"Stopped by {name} after step {last}; checkpoint {ckpt.directory / str(last)} written"
          f" {time.monotonic() - when:.1f} s after {name}. Run the same command again to resume.")
  elif lead and start < total:
    _summary(config, workdir, run_dirs, last, total, epochs, spe, study)
  elif lead:
    print(f"Nothing to train: the run is at step {start} of {total}. Raise --config.num_train_steps or the"
          " epochs to train on.")
  return state


def _summary(config, workdir, run_dirs: list, step: int, total: int, epochs: int,
             spe: int, study: bool) -> None:
  """Where a finished run's results are, and its last held-out metrics."""
  print(f"Finished step {step} of {total} (epoch {epoch_of(step, spe)}/{epochs}).")
  where = "replica_<k>/" if study else ""
  rows = [("samples", f"{workdir}/{where}samples/index.html"),
          ("losses", f"{workdir}/{where}losses.png, {workdir}/{where}metrics.jsonl, {workdir}/{where}tb/"
                     " (tensorboard --logdir ...: pip install -e '.[tensorboard]')"),
          ("checkpoints", f"{workdir / 'checkpoints' / str(step)}")]
  for label, path in rows:
    print(f"  {label:<12}{path}")


@contextlib.contextmanager
def _stop_requests(finished: Callable[[], int]):
  """Yields a list that receives (signal name, time.monotonic()) when SIGTERM or SIGINT arrives
  (preemption, Ctrl-C): the loop then finishes the steps in flight, checkpoints and returns. The
  first signal restores the default handlers, so a second one ends the process at once (orbax
  completes a checkpoint by an atomic rename or commit file, so the last complete one stays).
  `finished()` is the last finished step, for the message. Handlers are restored after."""
  received: list[tuple[str, float]] = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return

  def handler(signum, frame):
    del frame
    name = signal.Signals(signum).name
    received.append((name, time.monotonic()))
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, signal.SIG_DFL)
    # os.write, not print: a print interrupted by this handler must not be re-entered.
    os.write(sys.stderr.fileno(), f"\n{name} after step {finished()} finished: finishing the steps in flight,"
             f" then writing a checkpoint (another {name} exits at once).\n".encode())

  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)
