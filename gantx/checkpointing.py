"""Orbax checkpoints of everything a resume needs.

Each checkpoint step holds three items:
- 'state': the whole `TrainState` (parameters, batch statistics, both Adam states, the
  step, the run's PRNG key, the history pools);
- 'data': the grain iterator state (where the data stream is), so a resumed run sees the
  same batches an uninterrupted one would;
- 'config': the resolved config as JSON.

Saving is asynchronous: the loop keeps training while the previous checkpoint is written;
a step directory appears only once it is complete (orbax writes to a temporary name and
renames it), so a crash mid-write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` for (state, data iterator, config)."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=dict(state=ocp.StandardCheckpointHandler(), data=grain.checkpoint.CheckpointHandler(),
                           config=ocp.JsonCheckpointHandler()))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iter: grain.DatasetIterator | None, config) -> None:
    """Saves (state, data position, config) as step `step`. `data_iter=None` saves no data position
    (an imported model): a run resumed from it starts its data stream at the beginning."""
    items = dict(state=ocp.args.StandardSave(state),
                 config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())))
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, like_state: Any, data_iter: grain.DatasetIterator | None) -> Any:
    """Restores step `step` into the structure, shapes and shardings of `like_state` (arrays or
    jax.ShapeDtypeStructs with shardings); moves `data_iter`, if given, to the saved position.
    Returns the restored state."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    items = dict(state=ocp.args.StandardRestore(abstract))
    if data_iter is not None and (self.directory / str(step) / "data").exists():
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self._manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def restore_arrays(self, step: int) -> dict:
    """The state of step `step` as nested dicts of arrays on one device, whatever the model and
    its image size (shapes come from the checkpoint's metadata): for inference and inspection."""
    meta = self._manager.item_metadata(step)["state"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

  def restore_latest(self, like_state: Any, data_iter: grain.DatasetIterator,
                     check_config: Callable[[dict], None]) -> tuple[int, Any] | None:
    """(step, state) of the newest checkpoint that reads back whole, or None if there is none.

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
        return step, self.restore(step, like_state, data_iter)
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


def run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The resolved config a run wrote to `<workdir>/config.json`."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a gantx work directory (train.py writes one).")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_run(workdir: str | pathlib.Path, step: int | None = None) -> tuple[ml_collections.ConfigDict, int, dict]:
  """(config, step, state) of a run's checkpoint `step` (default: the latest), the state as nested
  dicts of arrays (`Checkpointer.restore_arrays`): what translate, evaluate and export read."""
  config = run_config(workdir)
  ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", config.max_checkpoints_to_keep)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {ckpt.directory}.")
    return config, step, ckpt.restore_arrays(step)
  finally:
    ckpt.close()
