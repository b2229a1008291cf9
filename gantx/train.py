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
import dataclasses
import functools
import json
import math
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
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
                "crop_size", "crop_width", "pool_size", "conditional_D")
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
  base = config_lib.base_config(saved.get("model", config.model))  # a field newer than the run: its default

  def diffs(fields):
    out = []
    for field in fields:
      now = config.data[field[5:]] if field.startswith("data.") else config.get(field)
      if field.startswith("data."):
        before = saved["data"].get(field[5:], base.data.get(field[5:]))
      else:
        before = saved.get(field, base.get(field))
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


class Member(NamedTuple):
  """One replica of a study: its seed streams, and its variant's numeric config changes ((field,
  value) pairs of `state.HPARAM_FIELDS`: values of the same compiled step)."""
  seeds: seeds_lib.Seeds
  changes: tuple[tuple[str, float], ...] = ()


def member_config(config, member: Member):
  """`config` with the member's seeds (`seeds.with_seeds`) and numeric changes."""
  config = seeds_lib.with_seeds(config, member.seeds)
  for field, value in member.changes:
    config[field] = value
  return config


def initial_state(config, nets: state_lib.Networks, members: list[Member] | None,
                  image_hw: tuple[int, int], mesh) -> state_lib.TrainState:
  """A fresh state placed on `mesh`: a run's (members=None, seeds from the config), replicated; or
  a study's, one per member stacked on a leading axis sharded over 'seeds'. Built eagerly:
  compiling init would cost ~15 s at full size for the same values."""
  def init(c) -> state_lib.TrainState:
    key, run_key = seeds_lib.state_keys(seeds_lib.from_config(c))
    return state_lib.init_state(c, nets, key, image_hw, run_key=run_key)

  if members is None:
    return parallel.place(init(config), parallel.replicated(mesh))
  states = [init(member_config(config, m)) for m in members]
  return parallel.place(jax.tree.map(lambda *xs: jnp.stack(xs), *states), parallel.replica_sharding(mesh))


def jitted_step(config, nets: state_lib.Networks, mesh, study: bool = False, shared_data: bool = True):
  """(the jitted, donating train step over `mesh`, the batch sharding it takes).

  A run's step takes the replicated state and a batch split over 'data'. A study's is the same
  step under `jax.vmap` over the replica axis (sharded over 'seeds'): with `shared_data` one batch
  for every replica (replicated over 'seeds'), else one per replica, shape (replicas, batch, ...);
  its convolutions take `conv.STUDY_RULES`' forms (the same numbers up to rounding).

  The step depends on `steps.StepSpec.from_config(config)` and the networks alone (its numbers
  are the state's), so configs that agree on those get the same jitted function, and the compiled
  step of one serves the next (`compile_step`): in one process, a resumed run, a study's next
  group or another test does not compile again.
  """
  modules = tuple(nets.modules.items())
  return _jitted_step(steps.StepSpec.from_config(config), modules, nets.generators, nets.discriminators, mesh,
                      study, shared_data)


@functools.lru_cache(maxsize=16)
def _jitted_step(spec: steps.StepSpec, modules: tuple, generators: tuple, discriminators: tuple, mesh,
                 study: bool, shared_data: bool):
  if study:  # no grouped convolutions under vmap (conv.STUDY_RULES)
    modules = tuple((n, models.with_rules(m, conv_lib.STUDY_RULES)) for n, m in modules)
  nets = state_lib.Networks(dict(modules), generators, discriminators, spe=0)  # the step reads no spe
  step_fn = steps.step_fn(spec, nets, parallel.batch_sharding(mesh))
  state_sharding, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  if study:
    step_fn = jax.vmap(step_fn, in_axes=(0, None if shared_data else 0), spmd_axis_name=parallel.SEEDS_AXIS)
    state_sharding = parallel.replica_sharding(mesh)
    if not shared_data:
      batch_sharding = parallel.replica_batch_sharding(mesh)
  step = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, state_sharding),
                 donate_argnums=0)
  return step, batch_sharding


_COMPILED: collections.OrderedDict = collections.OrderedDict()  # (step, input signature) -> compiled step


def compile_step(step, state, batch):
  """`step.lower(state, batch).compile()`, kept for the next run in this process with the same
  jitted step and input shapes, dtypes and shardings (the last 8)."""
  leaves, treedef = jax.tree.flatten((state, batch))
  key = (step, treedef, tuple((x.shape, x.dtype, x.sharding) for x in leaves))
  if key not in _COMPILED:
    _COMPILED[key] = step.lower(state, batch).compile()
    while len(_COMPILED) > 8:
      _COMPILED.popitem(last=False)
  _COMPILED.move_to_end(key)
  return _COMPILED[key]


@dataclasses.dataclass
class Setup:
  """What the loop sets up once, for a run or a study (or one group of a sweep): everything that
  does not change from step to step."""
  config: Any  # the run's config (a study's: the group's, without the members' seeds and changes)
  workdir: epath.Path
  members: list[Member] | None  # a study's replicas; None for a run
  mesh: Any
  nets: state_lib.Networks
  spe: int  # steps per epoch
  total: int  # the last step
  iterators: list  # the data streams: one per distinct data seed
  stream_of: list[int]  # member -> its stream
  eval_set: dict
  ckpt: checkpointing.Checkpointer
  train_step: Any
  batch_sharding: Any
  translators: dict
  eval_keys: list  # per member (or the run), the evaluations' dropout key
  fid_variables: Any
  outs: list[writers.Writer]  # per member (or the run): metrics.jsonl, samples, plots
  lead: bool  # process 0: it writes the logs

  @property
  def study(self) -> bool:
    return self.members is not None

  @property
  def epochs(self) -> int:
    return epoch_of(self.total, self.spe)

  def next_batch(self) -> dict:
    """The next global batch on the devices: a run's is this process's rows (`parallel.global_batch`);
    a study's, whole batches loaded by every process, one per member unless all share a stream."""
    if not self.study:
      return parallel.global_batch(next(self.iterators[0]), self.batch_sharding)
    hosts = [next(it) for it in self.iterators]
    host = hosts[0] if len(hosts) == 1 else {k: np.stack([hosts[i][k] for i in self.stream_of]) for k in hosts[0]}
    return parallel.place(host, self.batch_sharding)

  def evaluate(self, state, step: int) -> list[dict[str, float]]:
    """Each member's held-out metrics (`evaluate.evaluate`); writes its sample grids."""
    params, stats = jax.device_get((state.params, state.batch_stats))
    results = []
    for k, out in enumerate(self.outs):
      view = (lambda tree: jax.tree.map(lambda x: x[k], tree)) if self.study else (lambda tree: tree)
      metrics, columns = evaluate.evaluate(self.config, view(params), view(stats), self.eval_set, self.translators,
                                           self.eval_keys[k], self.fid_variables)
      for name, cols in columns.items():
        out.image(step, name, writers.image_grid([c for _, c in cols]), evaluate.column_titles(cols))
      results.append(metrics)
    return results

  def who(self, k: int) -> str:
    """' in replica k (seeds ...)' for messages about member k; '' for a run."""
    if not self.study:
      return ""
    m = self.members[k]
    return f" in replica {k} (seeds {m.seeds}{', ' + str(dict(m.changes)) if m.changes else ''})"


def set_up(config, workdir: str | os.PathLike, members: list[Member] | None = None,
           replica_dirs: list | None = None) -> tuple[Setup, state_lib.TrainState, int, dict | None]:
  """Everything before the first step: checks, data, networks, state, the resume, the compiled step
  and the outputs. Returns (setup, state, its step, the saved log window or None)."""
  config_lib.validate(config)
  parallel.prepare_processes()  # before anything compiles (also where jax.distributed started elsewhere)
  use_compilation_cache(config)
  workdir = paths.check_workdir(workdir)  # a local path or gs://, in a bucket that exists
  lead = jax.process_index() == 0
  study = members is not None
  n = len(members) if study else 1
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

  # Data first: a missing data set fails here, before anything compiles. Members with one data seed
  # read one stream. A study's process loads whole global batches (Setup.next_batch).
  if study:
    data_seeds = list(dict.fromkeys(m.seeds.data for m in members))
    stream_of = [data_seeds.index(m.seeds.data) for m in members]
    iterators = [data.make_train_iterator(seeds_lib.with_seeds(config, members[stream_of.index(i)].seeds))
                 for i in range(len(data_seeds))]
  else:
    stream_of = [0]
    iterators = [data.make_train_iterator(config, process_index=jax.process_index(),
                                          process_count=jax.process_count())]
  eval_set = data.make_eval_set(config)
  spe = schedules.steps_per_epoch(data.train_size(config), config.batch_size)
  total = schedules.total_steps(config, spe)

  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
  nets = state_lib.build_networks(config, spe)
  state = initial_state(config, nets, members, image_hw, mesh)
  counts = _log_param_counts(jax.tree.map(lambda x: x[0], state.params) if study else state.params)

  # Hosts load and check their data at different speeds: meet before the first collective (orbax's).
  parallel.barrier("start", config.peer_timeout_s)
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", config.max_checkpoints_to_keep, len(iterators))
  start, saved_log = 0, None
  restored = ckpt.restore_latest(state, iterators, lambda saved: _check_resume_config(config, saved))
  if restored is not None:
    hparams = state.hparams  # the config's numbers, whatever the checkpoint holds (allow_config_change)
    start, state, saved_log = restored
    state = state.replace(hparams=hparams)
    print(f"Resumed from {ckpt.directory / str(start)} at step {start}.")
  if lead:  # after the resume check: a refused config does not replace the run's record
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    (workdir / "params.json").write_text(json.dumps(counts, indent=2))

  train_step, batch_sharding = jitted_step(config, nets, mesh, study, len(iterators) == 1)
  if replica_dirs is None:
    replica_dirs = [workdir / f"replica_{k}" for k in range(n)] if study else [workdir]
  seed_sets = [m.seeds for m in members] if study else [seeds_lib.from_config(config)]
  setup = Setup(
      config=config, workdir=workdir, members=members, mesh=mesh, nets=nets, spe=spe, total=total,
      iterators=iterators, stream_of=stream_of, eval_set=eval_set, ckpt=ckpt, train_step=train_step,
      batch_sharding=batch_sharding,
      translators={name: evaluate.make_translator(nets.modules[name], config.eval)
                   for name, _, _ in evaluate.directions(config)},
      eval_keys=[seeds_lib.eval_key(s) for s in seed_sets],  # the same dropout masks at every evaluation
      fid_variables=inception.load_pt_inception(config.fid_weights) if config.fid_weights else None,
      outs=[writers.Writer(d, enabled=lead) for d in replica_dirs], lead=lead)
  return setup, state, start, saved_log


class Progress:
  """The loop's bookkeeping: the steps in flight, each member's window of losses since the last
  logged step, the progress bar, the watchdog, and the records written at log and evaluation steps."""

  def __init__(self, setup: Setup, start: int, saved_log: dict | None):
    self.s = setup
    n = len(setup.outs)
    # Per member, the finished steps' losses since the last logged window: (step, {name: float32}).
    self.window: list[list[tuple[int, dict]]] = [[] for _ in range(n)]
    if saved_log is not None:
      self.window = [[(s, {k: np.float32(v) for k, v in row.items()}) for s, row in rows]
                     for rows in saved_log["window"]]
    self.inflight: collections.deque = collections.deque()  # (step, metrics on the devices)
    self.waiting: dict[int, list[dict]] = {}  # step -> window means held back for that step's evaluation
    self.clock = {"start": time.perf_counter(), "steps": 0}  # images/s over the window's steps in this process
    self.done = start  # the last finished step
    self.saved = setup.ckpt.latest_step()  # the last checkpoint written or resumed from
    self.bar = None
    self.dog = watchdog_lib.Watchdog(0, self.waiting_for)  # armed once the steps start (`start_steps`)

  def start_steps(self) -> None:
    s = self.s
    self.dog = watchdog_lib.Watchdog(s.config.step_timeout_s, self.waiting_for)
    self.bar = tqdm(total=s.total, initial=self.done, disable=not s.lead, dynamic_ncols=True,
                    desc=f"{s.config.model} epoch {max(1, epoch_of(self.done, s.spe))}/{s.epochs}")
    self.clock["start"] = time.perf_counter()

  def waiting_for(self) -> str:
    """What the loop waits for (the watchdog's message)."""
    what = (f"step {self.inflight[0][0]} to finish (dispatched: steps {self.inflight[0][0]}-{self.inflight[-1][0]})"
            if self.inflight else f"the data of step {self.done + 1}")
    if self.saved is None:
      return what
    return f"{what}; the last checkpoint is {self.s.ckpt.directory / str(self.saved)}"

  def finish(self, upto: int) -> None:
    """Reads back the metrics of every dispatched step <= upto (waiting for them): checks them,
    adds them to the window, advances the bar, and logs at the log steps."""
    s = self.s
    while self.inflight and self.inflight[0][0] <= upto:
      step, metrics = self.inflight[0]
      values = jax.device_get(metrics)  # waits for the step
      self.inflight.popleft()
      for k, rows in enumerate(self.window):
        row = {name: v[k] if s.study else v for name, v in values.items()}
        if bad := [name for name, v in row.items() if not math.isfinite(float(v))]:
          raise FloatingPointError(f"Non-finite loss {', '.join(bad)} at step {step}{s.who(k)}; the last good"
                                   f" checkpoint in {s.ckpt.directory} is kept.")
        rows.append((step, row))
      self.clock["steps"] += 1
      self.done = step
      self.dog.beat()
      self.bar.update(1)
      if epoch_of(step, s.spe) != epoch_of(step - 1, s.spe):
        self.bar.set_description(f"{s.config.model} epoch {epoch_of(step, s.spe)}/{s.epochs}")
      if is_due(step, s.config.log_every_steps, s.total):
        means = self.close_window()
        if is_due(step, s.config.eval_every_steps, s.total):
          self.waiting[step] = means  # written with the evaluation of this step
        else:
          self.log(step, means)

  def close_window(self) -> list[dict]:
    """Means of each member's window (its steps since the last log step) and images/s."""
    rate = self.clock["steps"] * self.s.config.batch_size / max(time.perf_counter() - self.clock["start"], 1e-9)
    means = []
    for rows in self.window:
      means.append({k: float(np.mean([r[k] for _, r in rows])) for k in rows[0][1]} | {"images_per_s": rate})
      rows.clear()
    self.clock.update(start=time.perf_counter(), steps=0)
    self.bar.set_postfix_str(_compact({k: float(np.mean([m[k] for m in means])) for k in means[0]}))
    return means

  def log(self, step: int, values: list[dict]) -> None:
    for out, v in zip(self.s.outs, values):
      out.scalars(step, v)

  def evaluation(self, state, step: int, on_eval: Callable[[int], None] | None) -> None:
    """Evaluates, logs the held-back window with the results, prints the line, plots; on_eval last."""
    s = self.s
    with self.dog.paused():
      results = s.evaluate(state, step)
      self.log(step, [{**w, **r} for w, r in zip(self.waiting.pop(step, [{}] * len(s.outs)), results)])
      if s.lead:
        say = tqdm.write if self.bar is not None else print
        line = _metric_line(results, evaluate.no_metric_reason(s.config, s.eval_set))
        say(f"step {step} (epoch {epoch_of(step, s.spe)}/{s.epochs}): {line}")
        for out in s.outs:
          out.loss_curves()
        if on_eval is not None:
          on_eval(step)

  def save(self, state, step: int) -> None:
    log = {"window": [[[t, {k: float(v) for k, v in row.items()}] for t, row in rows] for rows in self.window]}
    with self.dog.paused():
      self.s.ckpt.save(step, state, self.s.iterators, self.s.config, log=log)
    self.saved = step

  def close(self) -> None:
    self.dog.close()
    if self.bar is not None:
      self.bar.close()


def run(config, workdir: str | os.PathLike, members: list[Member] | None = None,
        on_eval: Callable[[int], None] | None = None, replica_dirs: list | None = None) -> state_lib.TrainState:
  """The loop: a run (`members=None`), or a study of len(members) replicas whose state has a leading
  replica axis and whose step is the run's step under `jax.vmap`.

  Member k uses the seed streams and numeric changes of `members[k]` (`Member`); members that share
  the data seed share one data stream, loaded once. A study's members' logs and samples go to
  `replica_dirs` (default `<workdir>/replica_<k>`). `on_eval(step)` runs on process 0 after every
  evaluation has been written (the study's report).
  """
  s, state, start, saved_log = set_up(config, workdir, members, replica_dirs)
  config, total, ckpt = s.config, s.total, s.ckpt
  p = Progress(s, start, saved_log)
  last, stopped = start, None
  try:
    with _stop_requests(lambda: p.done) as stop:
      if start < total:
        batch = s.next_batch()
        print("Compiling the train step (cached for later runs)...", end=" ", flush=True)
        began = time.perf_counter()
        compiled = compile_step(s.train_step, state, batch)
        print(f"done in {time.perf_counter() - began:.1f} s.", flush=True)
        if start == 0:
          p.evaluation(state, 0, on_eval)
        parallel.barrier("first step", config.peer_timeout_s)  # compile and evaluation times differ by host
        allocator.release_freed_memory()  # the compiler's: the first step's buffers must not come on top of it
        p.start_steps()
        for step in range(start + 1, total + 1):
          p.finish(step - MAX_IN_FLIGHT)  # at most MAX_IN_FLIGHT steps in flight after this dispatch
          if stop:  # checked after the wait: a signal during it must not let one more step in
            break
          if batch is None:
            batch = s.next_batch()
          state, metrics = compiled(state, batch)
          batch, last = None, step
          p.inflight.append((step, metrics))
          if step == start + 1:  # and what the first execution set up and freed
            allocator.release_freed_memory()
          evaluate_now = is_due(step, config.eval_every_steps, total)
          save_now = is_due(step, config.checkpoint_every_steps, total)
          if evaluate_now or save_now:
            p.finish(step)
          if evaluate_now:
            p.evaluation(state, step, on_eval)
          if save_now:
            p.save(state, step)
          if is_due(step, config.log_every_steps, total):
            allocator.release_freed_memory()  # the heap of a long run stays near what its steps use
        p.finish(last)
        if stop and last < total:
          stopped = stop[0]
          if ckpt.latest_step() != last:
            p.save(state, last)
          ckpt.wait()
          if s.lead:  # the last evaluation, which plots, did not come
            for out in s.outs:
              out.loss_curves()
  finally:  # also on errors: an asynchronous checkpoint save in flight completes
    p.close()
    ckpt.close()
    for out in s.outs:
      out.close()
  if stopped is not None:
    name, when = stopped
    print(f"Stopped by {name} after step {last}; checkpoint {ckpt.directory / str(last)} written"
          f" {time.monotonic() - when:.1f} s after {name}. Run the same command again to resume.")
  elif s.lead and start < total:
    _summary(s, last)
  elif s.lead:
    print(f"Nothing to train: the run is at step {start} of {total}. Raise --config.num_train_steps or the"
          " epochs to train on.")
  return state


def _summary(s: Setup, step: int) -> None:
  """Where a finished run's results are."""
  print(f"Finished step {step} of {s.total} (epoch {epoch_of(step, s.spe)}/{s.epochs}).")
  where = os.fspath(s.outs[0].workdir.parent if s.study else s.workdir)
  each = "/replica_<k>" if s.study else ""
  rows = [("samples", f"{where}{each}/samples/index.html"),
          ("losses", f"{where}{each}/losses.png, {where}{each}/metrics.jsonl, {where}{each}/tb/"
                     " (tensorboard --logdir ...: pip install -e '.[tensorboard]')"),
          ("checkpoints", f"{s.ckpt.directory / str(step)}")]
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
