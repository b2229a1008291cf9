"""A generator serialized with `jax.export` (StableHLO), to run without the training code.

    python -m gantx export --workdir runs/facades --output facades_G.jaxexport

The file holds the generator with its weights as constants, for images of one height and width
and any batch size (a symbolic batch dimension). Load and run it with jax alone:

    import jax, numpy as np
    f = jax.export.deserialize(open("facades_G.jaxexport", "rb").read())
    fake = f.call(images, jax.random.key_data(jax.random.key(0)))  # images (N, H, W, C) in [-1, 1]

The second argument is the raw uint32 data of a PRNG key: the dropout key in the official
test-time mode (each image alone, batch statistics of the image, dropout on); it is unused when
the generator was exported with eval_mode=True (running averages, no dropout).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from gantx import evaluate, paths
from gantx.translate import Generator


def export_generator(gen: Generator, height: int, width: int, eval_mode: bool | None = None) -> jax.export.Exported:
  """`gen` as fn(images (N, height, width, input_nc) float32, key_data uint32[2]) -> (N, H, W, output_nc)."""
  eval_mode = gen.config.eval if eval_mode is None else eval_mode
  run = evaluate.make_translator(gen.module, eval_mode)
  params, stats = gen.variables["params"], gen.variables.get("batch_stats", {})

  def translate(images, key_data):
    key = jax.random.wrap_key_data(key_data)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(images.shape[0]))
    return run(params, stats, images, keys)

  (n,) = jax.export.symbolic_shape("n")
  images = jax.ShapeDtypeStruct((n, height, width, gen.input_nc), jnp.float32)
  key_data = jax.ShapeDtypeStruct((2,), jnp.uint32)
  return jax.export.export(jax.jit(translate))(images, key_data)


def save(exported: jax.export.Exported, path: str | os.PathLike) -> None:
  paths.path(path).write_bytes(exported.serialize())


def load(path: str | os.PathLike) -> jax.export.Exported:
  """The exported generator; call it as `load(path).call(images, key_data)`."""
  return jax.export.deserialize(bytearray(paths.path(path).read_bytes()))
