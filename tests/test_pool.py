"""The functional history pool: exact official semantics, statistics, jit, pool_size 0."""

import jax
import jax.numpy as jnp
import numpy as np

from gantx import pool


def _images(values):
  return jnp.asarray(values, jnp.float32).reshape(-1, 1, 1, 1)


def _official(stored: list, size: int, images, key):
  """The official ImagePool.query, one image at a time, with the same draws as gantx."""
  out = []
  for i, image in enumerate(images):
    k_p, k_idx = jax.random.split(jax.random.fold_in(key, i))
    p, idx = float(jax.random.uniform(k_p)), int(jax.random.randint(k_idx, (), 0, size))
    if len(stored) < size:
      stored.append(image)
      out.append(image)
    elif p > 0.5:
      out.append(stored[idx])
      stored[idx] = image
    else:
      out.append(image)
  return out


def test_pool_size_zero_returns_the_batch():
  state = pool.init(0, (1, 1, 1))
  x = _images([1.0, 2.0])
  out, new = pool.query(state, x, jax.random.key(0))
  assert out is x and new is state


def test_fill_phase_stores_and_returns_each_image():
  state = pool.init(3, (1, 1, 1))
  out, state = pool.query(state, _images([1, 2]), jax.random.key(0))
  np.testing.assert_array_equal(out, _images([1, 2]))
  out, state = pool.query(state, _images([3]), jax.random.key(1))
  np.testing.assert_array_equal(out, _images([3]))
  assert int(state.num_imgs) == 3
  np.testing.assert_array_equal(state.images, _images([1, 2, 3]))


def test_matches_the_official_pool_across_the_fill_boundary_and_when_full():
  size, query = 4, jax.jit(pool.query)
  state, stored = pool.init(size, (1, 1, 1)), []
  for step in range(6):  # batches of 3 cross the boundary at the second query
    batch = np.arange(3) + 10.0 * (step + 1)
    key = jax.random.key(step)
    out, state = query(state, _images(batch), key)
    expected = _official(stored, size, list(batch), key)
    np.testing.assert_array_equal(np.asarray(out).ravel(), expected)
    assert int(state.num_imgs) == len(stored)
    np.testing.assert_array_equal(np.asarray(state.images).ravel()[:len(stored)], stored)
  assert int(state.num_imgs) == size


def test_history_share_is_one_half_and_slots_are_uniform():
  """2,000 queries on a full pool of 10: history share within 0.5 +- 0.04 (about 3.6 sigma),
  and the slots swapped pass a chi-square test (9 dof, statistic < 27.9, p = 0.001)."""
  size, n = 10, 2000
  state = pool.init(size, (1, 1, 1))
  _, state = pool.query(state, _images(np.arange(size)), jax.random.key(0))
  new = np.arange(n) + 100.0
  out, state = jax.jit(pool.query)(state, _images(new), jax.random.key(1))
  out = np.asarray(out).ravel()
  mirror, slots = list(range(size)), []
  for x, y in zip(new, out):  # values are unique, so the returned value names the slot
    if y != x:
      idx = mirror.index(y)
      slots.append(idx)
      mirror[idx] = x
  np.testing.assert_array_equal(np.asarray(state.images).ravel(), mirror)
  assert abs(len(slots) / n - 0.5) < 0.04
  counts = np.bincount(slots, minlength=size)
  expected = len(slots) / size
  assert np.sum((counts - expected) ** 2 / expected) < 27.9
