"""The history pool of generated images (official `util/image_pool.py`), as pure functions.

Shrivastava et al. feed D a mix of current and past fakes. The official ImagePool is a
Python list with Python randomness; here it is a fixed-size ring buffer in the train state:
`PoolState` holds the stored images and how many are stored, and `query` is a pure
function of (state, images, key), so it jits, shards (it is replicated, one global pool
whatever the device count) and checkpoints with everything else.

Semantics, per image of the batch in order (exactly the official ones):
- pool_size 0: the batch is returned unchanged and nothing is stored;
- while fewer than pool_size images are stored: store the image and return it;
- once full: with probability 1/2 return a uniformly chosen stored image and put the new
  one in its slot; otherwise return the new image and leave the pool unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class PoolState(NamedTuple):
  images: Array  # (pool_size, H, W, C), the stored images; slots >= num_imgs are zeros
  num_imgs: Array  # shape=(), dtype=int32: how many slots are filled (<= pool_size)


def init(pool_size: int, image_shape: tuple[int, int, int], dtype=jnp.float32) -> PoolState:
  """An empty pool for images of shape (H, W, C)."""
  return PoolState(jnp.zeros((pool_size, *image_shape), dtype), jnp.zeros((), jnp.int32))


def query(state: PoolState, images: Array, key: Array) -> tuple[Array, PoolState]:
  """Returns (images for D, new state) for a batch `images` of shape (N, H, W, C).

  Image i of the batch uses `jax.random.fold_in(key, i)`: one uniform draw p (returned from
  history when p > 0.5, as the official code) and one uniform slot index.
  """
  pool_size = state.images.shape[0]
  if pool_size == 0:
    return images, state
  images = jax.lax.stop_gradient(images)

  def one(carry: PoolState, inputs):
    i, image = inputs
    stored, num = carry
    k_p, k_idx = jax.random.split(jax.random.fold_in(key, i))
    p = jax.random.uniform(k_p)
    idx = jax.random.randint(k_idx, (), 0, pool_size)
    filling = num < pool_size
    swap = jnp.logical_and(~filling, p > 0.5)
    slot = jnp.where(filling, num, idx)
    out = jnp.where(swap, stored[idx], image)
    write = jnp.logical_or(filling, swap)
    stored = stored.at[slot].set(jnp.where(write, image, stored[slot]))
    return PoolState(stored, num + filling.astype(jnp.int32)), out

  new_state, out = jax.lax.scan(one, state, (jnp.arange(images.shape[0]), images))
  return out, new_state
