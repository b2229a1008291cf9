"""The three seed streams of a run: network init, data, step randomness.

`config.seed` seeds everything, as it always has. `config.init_seed`, `config.data_seed` and
`config.step_seed`, when set, each replace it for one stream, so a study can vary one source of
randomness at a time (`gantx.study`):

  init  the initial parameters of every network;
  data  the order of the training examples, their crops and flips, and the unaligned B pairing;
  step  the step's randomness (dropout masks, history-pool draws, gradient-penalty
        interpolation) and the dropout of the evaluations during training.

Unset, each stream derives from `config.seed` exactly as before the streams existed, so a config
and its checkpoints give bitwise the same run. The built-in data set itself (which label maps
exist) is generated from `config.seed`: it is the data set, not its order, and stays the same
whichever streams a study varies. docs/reproducibility.md tabulates every key and seed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import ml_collections

FACTORS = ("init", "data", "step")


class Seeds(NamedTuple):
  """The seed of each stream (ints, any range; PRNG keys and grain seeds are derived from them)."""

  init: int
  data: int
  step: int


def from_config(config) -> Seeds:
  """The streams of `config`: `<factor>_seed` where set (not None), else `config.seed`."""
  def pick(factor: str) -> int:
    value = config.get(f"{factor}_seed")
    return int(config.seed if value is None else value)

  return Seeds(*(pick(f) for f in FACTORS))


def vary(base: Seeds, factors: tuple[str, ...], n: int) -> list[Seeds]:
  """n seed sets: set k takes base + k in each stream of `factors` and the base value in the others."""
  if bad := [f for f in factors if f not in FACTORS]:
    raise ValueError(f"Unknown seed stream {bad[0]!r}: vary one or more of {', '.join(FACTORS)}.")
  return [base._replace(**{f: getattr(base, f) + k for f in factors}) for k in range(n)]


def with_seeds(config, seeds: Seeds) -> ml_collections.ConfigDict:
  """A copy of `config` whose three streams are set explicitly to `seeds` (seed is unchanged)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for factor, value in zip(FACTORS, seeds):
    config[f"{factor}_seed"] = value
  return config


def state_keys(seeds: Seeds) -> tuple[jax.Array, jax.Array]:
  """(init key, run key) for `state.init_state`: the init key is fold_in(key(init), 0), whose
  split gives each network's key; the run key (the state's `key`, folded with the step number for
  each step's randomness) is the second half of the same split of fold_in(key(step), 0)."""
  init_key = jax.random.fold_in(jax.random.key(seeds.init), 0)
  run_key = jax.random.split(jax.random.fold_in(jax.random.key(seeds.step), 0))[1]
  return init_key, run_key


def eval_key(seeds: Seeds) -> jax.Array:
  """The dropout key of the evaluations during training (the same at every evaluation)."""
  return jax.random.fold_in(jax.random.key(seeds.step), 1)
