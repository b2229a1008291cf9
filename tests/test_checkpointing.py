"""Checkpoints hold the whole state (pools and PRNG key included) and the data position."""

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
  ckpt.save(1, state, it, config)
  ckpt.wait()
  expected_next = next(it)

  fresh_it = data.make_train_iterator(config)
  like = state_lib.init_state(config, nets, jax.random.key(1), (32, 32))
  restored = ckpt.restore(ckpt.latest_step(), like, fresh_it)
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
