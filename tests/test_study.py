"""Seed streams and seed studies: one source of randomness varied at a time, N replicas in one
program equal to N runs, the report."""

import hashlib
import runpy

import jax
import numpy as np
import pytest
from conftest import REPO

from gantx import data, schedules, seeds, state as state_lib, train as train_lib


def _digest(tree) -> str:
  h = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    x = jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  return h.hexdigest()[:16]


def _abs_sum(tree) -> float:
  return float(sum(np.sum(np.abs(np.asarray(x)), dtype=np.float64) for x in jax.tree.leaves(tree)))


# The quickstart's run before the seed streams existed (git 4793c61, the commit before them), under
# the tests' XLA settings (conftest: JAX_DISABLE_MOST_OPTIMIZATIONS, which changes the rounding of
# the initialisers' normal draws): digests of the initial parameters, the run key and the first
# three batches, and sums of the state after three steps (float arithmetic over whole networks:
# compared to rounding, as another CPU may sum in another order).
BEFORE_STREAMS = {"init_params": "c7667614df9af842", "init_key": "adda0f45e3d6641f", "batches": "aeb6b05f8d0e9f7d",
                  "sums_after": {"D": 11529.467247006925, "G": 118113.00867016609},
                  "moment_sums_after": {"D": 0.029843662945635584, "G": 27.68796632479964}}


def test_a_config_without_stream_seeds_runs_as_before_the_streams(tmp_path):
  config = runpy.run_path(f"{REPO}/configs/quickstart.py")["get_config"]()
  config.num_train_steps, config.eval_every_steps, config.checkpoint_every_steps, config.log_every_steps = 3, 0, 3, 1
  assert seeds.from_config(config) == seeds.Seeds(0, 0, 0)
  nets = state_lib.build_networks(config, schedules.steps_per_epoch(data.train_size(config), config.batch_size))
  key, run_key = seeds.state_keys(seeds.from_config(config))
  init = state_lib.init_state(config, nets, key, (64, 64), run_key=run_key)
  it = data.make_train_iterator(config)
  assert _digest(init.params) == BEFORE_STREAMS["init_params"]
  assert _digest(init.key) == BEFORE_STREAMS["init_key"]
  assert _digest([next(it) for _ in range(3)]) == BEFORE_STREAMS["batches"]
  state = train_lib.train_and_evaluate(config, tmp_path)
  assert _digest(state.key) == BEFORE_STREAMS["init_key"]
  for name, want in BEFORE_STREAMS["sums_after"].items():
    np.testing.assert_allclose(_abs_sum(state.params[name]), want, rtol=1e-5, err_msg=name)
  for group, want in BEFORE_STREAMS["moment_sums_after"].items():
    np.testing.assert_allclose(_abs_sum(state.opt_state[group][0].nu), want, rtol=1e-4, err_msg=group)


def test_each_stream_seed_changes_its_stream_alone():
  config = runpy.run_path(f"{REPO}/configs/quickstart.py")["get_config"]()
  base = seeds.from_config(config)
  for factor in seeds.FACTORS:
    varied = seeds.from_config(seeds.with_seeds(config, base._replace(**{factor: 7})))
    assert varied == base._replace(**{factor: 7})
  init, run = seeds.state_keys(base._replace(init=7))
  assert _digest(run) == _digest(seeds.state_keys(base)[1]) and _digest(init) != _digest(seeds.state_keys(base)[0])
  init, run = seeds.state_keys(base._replace(step=7))
  assert _digest(init) == _digest(seeds.state_keys(base)[0]) and _digest(run) != _digest(seeds.state_keys(base)[1])
  assert _digest(seeds.eval_key(base._replace(data=7))) == _digest(seeds.eval_key(base))
  assert seeds.vary(base, ("init", "step"), 3) == [seeds.Seeds(k, 0, k) for k in range(3)]
  with pytest.raises(ValueError, match="Unknown seed stream 'weights'"):
    seeds.vary(base, ("weights",), 2)
