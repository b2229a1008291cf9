"""Checkpoints hold the whole state (pools and PRNG key included), the data positions and the log window."""

import shutil

import jax
import numpy as np
from conftest import tiny_config

from gantx import checkpointing, data, state as state_lib, steps


def test_state_with_pools_and_iterator_round_trip(tmp_path):
  config = tiny_config("cycle_gan")
  nets = state_lib.build_networks(config, 10)
  state = state_lib.init_state(config, nets, jax.random.key(0), (32, 32))
  it = data.make_train_iterator(config)
  state, _ = jax.jit(steps.train_step_fn(config, nets))(state, next(it))
  assert int(state.pools["fake_B"].num_imgs) == 2

  ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
  window = {"window": [[[1, {"G_A": 0.25}]]]}
  ckpt.save(1, state, [it], config, log=window)
  ckpt.wait()
  expected_next = next(it)

  fresh_it = data.make_train_iterator(config)
  like = state_lib.init_state(config, nets, jax.random.key(1), (32, 32))
  restored, log = ckpt.restore(ckpt.latest_step(), like, [fresh_it])
  assert log == window
  ckpt.close()
  unkey = lambda s: jax.tree.map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, s)
  for a, b in zip(jax.tree.leaves(unkey(state)), jax.tree.leaves(unkey(restored))):
    np.testing.assert_array_equal(a, b)
  assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
  got_next = next(fresh_it)
  for k in expected_next:
    np.testing.assert_array_equal(got_next[k], expected_next[k])
  assert checkpointing.Checkpointer(tmp_path, 2).saved_config(1)["model"] == "cycle_gan"


def test_a_study_checkpoint_holds_one_data_position_per_stream(tmp_path):
  """Three iterators at three positions come back at those positions; reading the state alone needs
  no knowledge of the streams (translate, evaluate)."""
  config = tiny_config("pix2pix")
  its = [data.make_train_iterator(config) for _ in range(3)]
  for k, it in enumerate(its):
    for _ in range(k):
      next(it)
  state = {"w": np.arange(3.0)}
  ckpt = checkpointing.Checkpointer(tmp_path, 2, data_streams=3)
  ckpt.save(4, state, its, config)
  ckpt.close()
  expected = [next(it)["A"] for it in its]
  assert not np.array_equal(expected[0], expected[2])
  fresh = [data.make_train_iterator(config) for _ in range(3)]
  ckpt = checkpointing.Checkpointer(tmp_path, 2, data_streams=3)
  _, log = ckpt.restore(4, state, fresh)
  ckpt.close()
  assert log is None
  for it, want in zip(fresh, expected):
    np.testing.assert_array_equal(next(it)["A"], want)
  np.testing.assert_array_equal(checkpointing.Checkpointer(tmp_path, 2).restore_arrays(4)["w"], state["w"])


def _strip(tree: dict, key: str) -> dict:
  return {k: _strip(v, key) if isinstance(v, dict) else v for k, v in tree.items() if k != key}


def test_a_checkpoint_from_before_the_counters_and_the_state_hyperparameters_resumes(tmp_path, capsys):
  """gantx once saved batch norm without num_batches_tracked, and the state without its hparams:
  such a checkpoint resumes with every other array as saved, the counters from 0 (then one per
  train-mode call: G 1, D 3 per step) and the hyperparameters from the config."""
  from gantx import train as train_lib
  config = tiny_config("pix2pix", num_train_steps=1, checkpoint_every_steps=1, eval_every_steps=0)
  train_lib.train_and_evaluate(config, tmp_path)
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", 3)
  saved = ckpt.restore_arrays(1)
  assert int(saved["batch_stats"]["D"]["norm1"]["bn"]["num_batches_tracked"]) == 3
  assert set(saved["hparams"]) >= {"lr", "beta1", "lambda_L1", "lr_constant_steps"}
  old = {k: v for k, v in saved.items() if k != "hparams"}
  old["batch_stats"] = _strip(saved["batch_stats"], "num_batches_tracked")
  ckpt.close()
  shutil.rmtree(tmp_path / "checkpoints")
  ckpt = checkpointing.Checkpointer(tmp_path / "checkpoints", 3)
  ckpt.save(1, old, [], config)
  ckpt.close()
  capsys.readouterr()
  config.num_train_steps = 2
  state = train_lib.train_and_evaluate(config, tmp_path)
  assert "predates the batch-norm call counters" in capsys.readouterr().out
  assert int(state.batch_stats["G"]["outer"]["inner"]["down_norm"]["bn"]["num_batches_tracked"]) == 1
  assert int(state.batch_stats["D"]["norm1"]["bn"]["num_batches_tracked"]) == 3
  assert int(state.step) == 2
  assert float(state.hparams["lr"]) == np.float32(config.lr) and float(state.hparams["lambda_L1"]) == 100.0
