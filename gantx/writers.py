"""Run outputs: metrics as JSON lines and TensorBoard events, image grids as PNG.

Only process 0 writes (a writer built with `enabled=False` does nothing), so a multi-host
run produces one set of files. TensorBoard events come from tensorboardX: no TensorFlow.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from PIL import Image

from gantx import data


def image_grid(columns: list[np.ndarray], pad: int = 2) -> np.ndarray:
  """One row per image, one column per entry of `columns` (each (N, H, W, C) in [-1, 1]);
  grayscale columns are shown as RGB."""
  cols = [data.to_uint8(np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 else c) for c in columns]
  n, h, w, _ = cols[0].shape
  grid = np.full((n * (h + pad) + pad, len(cols) * (w + pad) + pad, 3), 255, np.uint8)
  for j, col in enumerate(cols):
    for i in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = col[i]
  return grid


class Writer:
  """Writes `metrics.jsonl`, TensorBoard events (`tb/`) and PNGs (`samples/`) under workdir."""

  def __init__(self, workdir: str | pathlib.Path, enabled: bool = True):
    self.workdir = pathlib.Path(workdir)
    self.enabled = enabled
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
      (self.workdir / "samples").mkdir(parents=True, exist_ok=True)
      self._tb = SummaryWriter(str(self.workdir / "tb"))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.workdir / "metrics.jsonl", "a") as f:
      f.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
    for k, v in values.items():
      self._tb.add_scalar(k, float(v), step)

  def image(self, step: int, name: str, grid: np.ndarray) -> pathlib.Path | None:
    """Saves `samples/<name>_<step>.png` and logs it to TensorBoard."""
    if not self.enabled:
      return None
    path = self.workdir / "samples" / f"{name}_{step:07d}.png"
    Image.fromarray(grid).save(path)
    self._tb.add_image(name, grid, step, dataformats="HWC")
    return path

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
