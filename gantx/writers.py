"""Run outputs: metrics as JSON lines and TensorBoard events, image grids as PNG, HTML pages.

Only process 0 writes (a writer built with `enabled=False` does nothing), so a multi-host
run produces one set of files. TensorBoard events come from tensorboardX: no TensorFlow. Every
path may be in a bucket (`gantx.paths`): files are written whole through `epath`, and
tensorboardX writes gs:// event files itself (google-cloud-storage, installed with gcsfs).
"""

from __future__ import annotations

import html
import io
import json
import os

import numpy as np
from etils import epath
from PIL import Image

from gantx import paths
from gantx.data import images


def image_grid(columns: list[np.ndarray], pad: int = 2) -> np.ndarray:
  """One row per image, one column per entry of `columns` (each (N, H, W, C) in [-1, 1]);
  grayscale columns are shown as RGB."""
  cols = [images.to_uint8(np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 else c) for c in columns]
  n, h, w, _ = cols[0].shape
  grid = np.full((n * (h + pad) + pad, len(cols) * (w + pad) + pad, 3), 255, np.uint8)
  for j, col in enumerate(cols):
    for i in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = col[i]
  return grid


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
  """Writes `image` as a PNG file, local or in a bucket."""
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  paths.path(path).write_bytes(buffer.getvalue())


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
  """Saves an (H, W, 1 or 3) image in [-1, 1] as an 8-bit PNG (grayscale or RGB)."""
  x = images.to_uint8(image)
  save_png(Image.fromarray(x[:, :, 0] if x.shape[-1] == 1 else x), path)


def html_table(path: str | os.PathLike, title: str, columns: list[str],
               rows: list[tuple[str, list[str]]], refresh_s: int = 0, head_html: str = "") -> None:
  """Writes an HTML page like the official results/web pages: one row per entry (its name, then
  one image per column); image paths are relative to the page. `refresh_s` > 0 reloads it;
  `head_html` (trusted HTML) goes between the title and the table."""
  esc = html.escape
  head = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
  lines = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}<title>{esc(title)}</title></head><body>",
           f"<h2>{esc(title)}</h2>{head_html}<table border='1' style='border-collapse:collapse'>",
           "<tr><th>name</th>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>"]
  for name, files in rows:
    cells = "".join(f"<td><a href='{esc(i)}'><img src='{esc(i)}' style='max-width:256px'></a></td>" for i in files)
    lines.append(f"<tr><td>{esc(name)}</td>{cells}</tr>")
  lines.append("</table></body></html>")
  paths.path(path).write_text("\n".join(lines) + "\n")


class Writer:
  """Writes `metrics.jsonl`, TensorBoard events (`tb/`) and PNGs (`samples/`) under workdir."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.workdir = paths.path(workdir)
    self.enabled = enabled
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
      (self.workdir / "samples").mkdir(parents=True, exist_ok=True)
      self._tb = SummaryWriter(os.fspath(self.workdir / "tb"))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    paths.append_text(self.workdir / "metrics.jsonl",
                      json.dumps({"step": step, **{k: float(v) for k, v in values.items()}}) + "\n")
    for k, v in values.items():
      self._tb.add_scalar(k, float(v), step)

  def image(self, step: int, name: str, grid: np.ndarray, titles: list[str]) -> epath.Path | None:
    """Saves `samples/<name>_<step>.png`, logs it to TensorBoard and adds it to the training
    gallery `samples/index.html` (newest first, like the official web/index.html). `titles`
    names the grid's columns (input, output, ...)."""
    if not self.enabled:
      return None
    path = self.workdir / "samples" / f"{name}_{step:07d}.png"
    save_png(Image.fromarray(grid), path)
    self._tb.add_image(name, grid, step, dataformats="HWC")
    self._gallery(" | ".join(titles))
    return path

  def _gallery(self, titles: str) -> None:
    by_step: dict[str, dict[str, str]] = {}
    for png in (self.workdir / "samples").glob("*_*.png"):
      name, step = png.stem.rsplit("_", 1)
      by_step.setdefault(step, {})[name] = png.name
    names = sorted({n for row in by_step.values() for n in row})
    rows = [(f"step {int(step)}", [by_step[step].get(n, "") for n in names]) for step in sorted(by_step, reverse=True)]
    html_table(self.workdir / "samples" / "index.html", f"{self.workdir.name}: {titles}",
               names, rows, refresh_s=60)

  def loss_curves(self) -> epath.Path | None:
    """Plots metrics.jsonl against the step into `losses.png` (the training loop rewrites it at
    every evaluation, as the official visualizer plots live), once some scalar has two points;
    None (and no file) before. One panel of the training losses (all in one, as the official
    plot), one per held-out metric family (L1_G_A and L1_G_B together), lr and images/s."""
    if not self.enabled or not (self.workdir / "metrics.jsonl").exists():
      return None
    # A bare Figure (no pyplot): no GUI backend, and a notebook's inline backend is left alone.
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  (only for this plot)

    from gantx import metrics  # pylint: disable=g-import-not-at-top  (jax: only where a plot is drawn)

    series: dict[str, list[tuple[int, float]]] = {}
    for line in (self.workdir / "metrics.jsonl").read_text().splitlines():
      record = json.loads(line)
      for k, v in record.items():
        if k != "step":
          series.setdefault(k, []).append((record["step"], v))
    if not any(len(points) > 1 for points in series.values()):  # single points (step 0) are no curve yet
      return None
    panels: dict[str, list[str]] = {}
    for name in sorted(series):
      title = name if name in ("lr", "images_per_s") else metrics.family(name) or "training losses"
      panels.setdefault(title, []).append(name)
    order = ["training losses", *(f for f in metrics.FAMILIES if f in panels), "lr", "images_per_s"]
    titles = [t for t in order if t in panels]
    cols = min(3, len(titles))
    rows = -(-len(titles) // cols)
    fig = Figure(figsize=(4.3 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, title in zip(axes.flat, titles):
      for name in panels[title]:
        steps, values = zip(*sorted(series[name]))
        ax.plot(steps, values, label=name, marker="." if len(steps) < 20 else None)
      ax.ticklabel_format(axis="y", useOffset=False)  # a flat lr is 0.0002, not 1e-11 + 1.999999e-4
      ax.set_title(title, fontsize=9)
      ax.set_xlabel("step", fontsize=8)
      if len(panels[title]) > 1:
        ax.legend(fontsize=7)
    for ax in axes.flat[len(titles):]:
      ax.axis("off")
    fig.tight_layout()
    path = self.workdir / "losses.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    path.write_bytes(buffer.getvalue())
    return path

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
