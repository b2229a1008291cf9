"""Orbax checkpoints of everything a resume needs.

Each checkpoint step holds these items:
- 'state': the whole `TrainState` (parameters, batch statistics, both Adam states, the
  step, the run's PRNG key, the history pools); a study's, with a leading replica axis;
- 'data': the grain iterator state (where the data stream is), so a resumed run sees the
  same batches an uninterrupted one would; a study that varies the data stream has one
  iterator per replica, 'data_0', 'data_1', ...;
- 'config': the resolved config as JSON;
- 'log': the losses of the steps since the last logged window (JSON), so that a window's
  mean does not depend on where a run stopped.

Saving is asynchronous: the loop keeps training while the previous checkpoint is written;
a step directory appears only once it is complete (orbax writes to a temporary name and
renames it), so a crash mid-write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, NamedTuple, Sequence

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from gantx import paths


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` for (state, data iterator, config)."""

  def __init__(self, directory: str | os.PathLike, max_to_keep: int, data_streams: int = 1):
    """`data_streams`: how many data iterators a checkpoint holds (a study that varies the data
    stream has one per replica); restoring only the state works whatever it was."""
    directory = paths.path(directory)
    self.directory = directory if paths.is_remote(directory) else directory.absolute()
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=dict(state=ocp.StandardCheckpointHandler(), config=ocp.JsonCheckpointHandler(),
                           log=ocp.JsonCheckpointHandler(),
                           **{name: grain.checkpoint.CheckpointHandler() for name in _data_items(data_streams)}))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iters: Sequence[grain.DatasetIterator], config,
           log: dict | None = None) -> None:
    """Saves (state, data positions, config, log window) as step `step`. No `data_iters` saves no
    data position (an imported model): a run resumed from it starts its data stream at the beginning."""
    items = dict(state=ocp.args.StandardSave(state),
                 config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())))
    for name, it in zip(_data_items(len(data_iters)), data_iters):
      items[name] = grain.checkpoint.CheckpointSave(it)
    if log is not None:
      items["log"] = ocp.args.JsonSave(log)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, like_state: Any, data_iters: Sequence[grain.DatasetIterator] = ()
              ) -> tuple[Any, dict | None]:
    """Restores step `step` into the structure, shapes and shardings of `like_state` (arrays or
    jax.ShapeDtypeStructs with shardings); moves `data_iters`, if given, to their saved positions.
    Returns (state, log window or None).

    Leaves that older checkpoints lack are taken from `like_state`, the rest is restored as saved:
    `num_batches_tracked` (before gantx counted batch-norm calls: 0 in a fresh state) and
    `hparams` (before the numbers of the step were state values: the loop sets them from the config).
    """
    saved = self._saved_shapes(step)
    names = [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(like_state)[0]]
    missing = {n for n in names if n not in saved}
    if missing and all(n.endswith(f"/{_COUNTER}") or n.startswith("hparams/") for n in missing):
      if any(n.endswith(f"/{_COUNTER}") for n in missing):
        print(f"Checkpoint {self.directory / str(step)} predates the batch-norm call counters: num_batches_tracked"
              " restarts from 0 (docs/reproducibility.md).")
      fields = ({f.name: getattr(like_state, f.name) for f in dataclasses.fields(like_state)}
                if dataclasses.is_dataclass(like_state) else like_state)  # a TrainState cannot lose a field
      state, log = self.restore(step, _without(fields, missing), data_iters)
      restored = {_path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(state)[0]}
      state = jax.tree_util.tree_map_with_path(lambda p, x: restored.get(_path_name(p), x), like_state)
      return state, log
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    items = dict(state=ocp.args.StandardRestore(abstract))
    for name, it in zip(_data_items(len(data_iters)), data_iters):
      if (self.directory / str(step) / name).exists():
        items[name] = grain.checkpoint.CheckpointRestore(it)
    if (self.directory / str(step) / "log").exists():
      items["log"] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored.get("log")

  def restore_extra(self, step: int, data_item: str, data_iter: grain.DatasetIterator) -> dict | None:
    """Moves `data_iter` to the position saved as item `data_item` ('data', 'data_<k>') of step
    `step`; returns the log window (None if the checkpoint has none). The state is not read."""
    items = {data_item: grain.checkpoint.CheckpointRestore(data_iter)}
    if (self.directory / str(step) / "log").exists():
      items["log"] = ocp.args.JsonRestore()
    return self._manager.restore(step, args=ocp.args.Composite(**items)).get("log")

  def restore_arrays(self, step: int) -> dict:
    """The state of step `step` as nested dicts of arrays on one device, whatever the model and
    its image size (shapes come from the checkpoint's metadata): for inference and inspection."""
    meta = self._manager.item_metadata(step)["state"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

  def restore_latest(self, like_state: Any, data_iters: Sequence[grain.DatasetIterator],
                     check_config: Callable[[dict], None]) -> tuple[int, Any, dict | None] | None:
    """(step, state, log window) of the newest checkpoint that reads back whole, or None if there is none.

    `check_config(saved_config)` runs first and may raise (a run of another architecture is a
    config error, not damage). A checkpoint that then cannot be read (a truncated or corrupt
    file) is reported by name, renamed to `<step>.unreadable` (kept, not deleted: nothing
    trained is thrown away) and the next older one is tried.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        saved = self.saved_config(step)
      except Exception as e:  # orbax/tensorstore raise many types for a damaged file
        self._set_aside(step, e)
        continue
      check_config(saved)
      try:
        saved_shapes = self._saved_shapes(step)
      except Exception as e:
        self._set_aside(step, e)
        continue
      if (difference := _first_shape_difference(saved_shapes, like_state)) is not None:
        raise ValueError(f"Checkpoint {self.directory / str(step)} holds a state of other shapes ({difference}):"
                         " the config changed the image size (load_size, crop_size, preprocess or the data)"
                         " or the networks. Use another --workdir, or the config the run was started with.")
      try:
        return (step, *self.restore(step, like_state, data_iters))
      except Exception as e:
        self._set_aside(step, e)
    return None

  def _saved_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
    meta = self._manager.item_metadata(step)["state"]
    return {_path_name(path): tuple(m.shape) for path, m in jax.tree_util.tree_flatten_with_path(meta)[0]}

  def _set_aside(self, step: int, error: Exception) -> None:
    path = self.directory / str(step)
    kept, i = path.with_name(f"{step}.unreadable"), 1
    while kept.exists():  # the same step may go bad again after a restart
      kept, i = path.with_name(f"{step}.unreadable.{i}"), i + 1
    print(f"Checkpoint {path} cannot be read ({type(error).__name__}: {str(error)[:300]}); kept as {kept},"
          " trying the previous one.")
    if jax.process_index() == 0:
      path.rename(kept)
    self._manager.reload()

  def saved_config(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _data_items(n: int) -> list[str]:
  """Item names of n data iterators: 'data' for one (a run, or a study with one shared stream),
  'data_0', 'data_1', ... for a study's streams."""
  return ["data"] if n == 1 else [f"data_{k}" for k in range(n)]


_COUNTER = "num_batches_tracked"


def _without(tree: dict, missing: set[str], path: tuple = ()) -> dict:
  """Nested dicts `tree` without the entries whose leaf paths (`_path_name`) are in `missing`, and
  without the dicts that this empties."""
  out = {}
  for k, v in tree.items():
    where = (*path, jax.tree_util.DictKey(k))
    if isinstance(v, dict) and v:
      v = _without(v, missing, where)
      if not v:
        continue
    elif _path_name(where) in missing:
      continue
    out[k] = v
  return out


def _path_name(path) -> str:
  """'params/G/outer/down_conv/kernel' for a key path of a TrainState or of its saved dict tree."""
  return "/".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def _first_shape_difference(saved: dict[str, tuple[int, ...]], like_state: Any) -> str | None:
  """'<leaf>: saved <shape>, now <shape>' for the first array whose saved shape differs (PRNG keys,
  saved as their raw data, are not compared); None if all match."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(like_state)[0]:
    name = _path_name(path)
    if name in saved and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) and saved[name] != tuple(leaf.shape):
      return f"{name}: saved {saved[name]}, now {tuple(leaf.shape)}"
  return None


# A seed study's work directory holds this file (its replicas' seeds); a run's does not.
STUDY_FILE = "seeds.json"


def read_study(workdir: str | os.PathLike) -> dict | None:
  """A study's seeds.json ({'seeds': N, 'vary': [...], 'replicas': [{'init', 'data', 'step'}, ...]}),
  or None for a run."""
  path = paths.path(workdir) / STUDY_FILE
  return json.loads(path.read_text()) if path.is_file() else None


class StudyMember(NamedTuple):
  """Where replica j of a study lives: its group (a sweep's groups train one after another), its index
  among the group's stacked replicas, its data stream among the group's, and its variant's changes."""
  group: int
  index: int
  stream: int
  streams: int  # data streams (checkpoint items 'data' or 'data_<k>') of the group
  changes: dict  # the variant's config changes ({} in a seed study)


def study_member(study: dict, replica: int) -> StudyMember:
  """Replica `replica` of a study's seeds.json (`read_study`); a seed study is one group of all."""
  rows = study["replicas"]
  variant = rows[replica].get("variant", 0)
  groups = study.get("groups", [[0]])
  g = next(i for i, vs in enumerate(groups) if variant in vs)
  members = [j for j, r in enumerate(rows) if r.get("variant", 0) in groups[g]]
  data_seeds = list(dict.fromkeys(rows[j]["data"] for j in members))  # as train.set_up orders the streams
  changes = study["variants"][variant]["changes"] if "variants" in study else {}
  return StudyMember(g, members.index(replica), data_seeds.index(rows[replica]["data"]), len(data_seeds), changes)


def group_dir(workdir, study: dict, group: int):
  """The folder of a study's group `group`: the study's own for a study of one group (every seed
  study), `<workdir>/group_<g>` with several."""
  workdir = paths.path(workdir)
  return workdir if len(study.get("groups", [[0]])) == 1 else workdir / f"group_{group}"


def data_streams(study: dict | None) -> int:
  """How many data iterators a run's (None) or a seed study's checkpoints hold: one per distinct data seed."""
  if study is None:
    return 1
  return study_member(study, 0).streams


def run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The resolved config a run wrote to `<workdir>/config.json`."""
  path = paths.path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a gantx work directory (train.py writes one).")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_run(workdir: str | os.PathLike, step: int | None = None, replica: int | None = None
             ) -> tuple[ml_collections.ConfigDict, int, dict]:
  """(config, step, state) of a run's checkpoint `step` (default: the latest), the state as nested
  dicts of arrays (`Checkpointer.restore_arrays`): what translate, evaluate and export read.

  A seed study's work directory needs `replica` (0..N-1): its state is that replica's slice and its
  config carries the replica's seeds (`seeds.with_seeds`). ValueError for a replica on a run, none
  or one out of range on a study; FileNotFoundError for a step that is not there, listing those that are.
  """
  from gantx import seeds as seeds_lib  # pylint: disable=g-import-not-at-top

  config = run_config(workdir)
  study = read_study(workdir)
  if study is None and replica is not None:
    raise ValueError(f"--replica {replica}: {workdir} is a run, not a seed study; leave --replica out.")
  folder, member = paths.path(workdir), None
  if study is not None:
    n = len(study["replicas"])
    if replica is None:
      raise ValueError(f"{workdir} is a seed study of {n} replicas: give --replica k (k = 0..{n - 1}).")
    if not 0 <= replica < n:
      raise ValueError(f"--replica {replica} is out of range: the study in {workdir} has {n} replicas (0..{n - 1}).")
    member = study_member(study, replica)
    folder = group_dir(workdir, study, member.group)
    for field, value in member.changes.items():  # on the study's config (a sweep's base config)
      config[field] = value
    row = study["replicas"][replica]
    config = seeds_lib.with_seeds(config, seeds_lib.Seeds(row["init"], row["data"], row["step"]))
  ckpt = Checkpointer(folder / "checkpoints", config.max_checkpoints_to_keep, member.streams if member else 1)
  try:
    steps = sorted(ckpt.all_steps())
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {ckpt.directory}.")
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise FileNotFoundError(f"No checkpoint of step {step} in {ckpt.directory}: it holds step"
                              f"{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}.")
    state = ckpt.restore_arrays(step)
  finally:
    ckpt.close()
  if member is not None:
    state = jax.tree.map(lambda x: x[member.index], state)
  return config, step, state
