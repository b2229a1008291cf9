"""Variants of a config for a study: `--sweep FIELD=v1,v2,...` and the papers' ablations as presets.

    python -m gantx study --config configs/quickstart.py --workdir runs/lr --seeds 4 --sweep lr=1e-4,2e-4,4e-4
    python -m gantx study --config configs/quickstart.py --workdir runs/ablation --seeds 4 --vary init \\
        --sweep preset=pix2pix_losses

The study is the grid of variants (every combination of the --sweep values) x the N seed sets, and
every variant trains with the same N seed sets, so that variant A's replica k and variant B's
replica k differ in the variant alone: the comparisons are paired by seed.

How variants train (`groups`):
- Fields that enter the train step as values (`state.HPARAM_FIELDS`: lr, beta1, lambda_L1,
  lambda_A, lambda_B, lambda_identity, lambda_gp, lambda_GAN) are per-replica values of one
  compiled, vmapped step: all variants that differ only in them train together, as replicas.
- Fields that change the step's code or shapes (STRUCTURAL: netG, netD, n_layers_D, norm, gan_mode,
  pool_size, ngf, ndf, conditional_D), and whether lambda_GAN or lambda_identity is 0 (no
  discriminator, no identity pass), make groups, trained one after another by the same loop.

Presets (the ablations of the papers; each a list of named variants):
- pix2pix_losses (pix2pix paper, Table 1): L1 (no discriminator), cGAN (lambda_L1 0), L1+cGAN (the
  official objective), GAN (D sees the output alone, no L1), L1+GAN.
- pix2pix_patch (pix2pix paper, Table 3): the discriminator's receptive field: 1x1 (netD pixel),
  16x16 (n_layers 1), 70x70 (basic: n_layers 3), 286x286 (n_layers 5).
- cyclegan_losses (CycleGAN paper, Table 4, without the identity loss, as there): cycle alone (no
  discriminators), GAN alone (no cycle terms), GAN + forward cycle (lambda_B 0), GAN + backward
  cycle (lambda_A 0), full.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any, NamedTuple

from gantx import state as state_lib

NUMERIC = state_lib.HPARAM_FIELDS
STRUCTURAL = ("netG", "netD", "n_layers_D", "norm", "gan_mode", "pool_size", "ngf", "ndf", "conditional_D")
# Numeric fields whose zero changes what the step runs (steps.StepSpec): 0 and non-zero are groups.
GATES = ("lambda_GAN", "lambda_identity")

PRESETS: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    "pix2pix_losses": ("pix2pix", [
        ("L1", {"lambda_GAN": 0.0}),
        ("cGAN", {"lambda_L1": 0.0}),
        ("L1+cGAN", {}),
        ("GAN", {"lambda_L1": 0.0, "conditional_D": False}),
        ("L1+GAN", {"conditional_D": False}),
    ]),
    "pix2pix_patch": ("pix2pix", [
        ("1x1", {"netD": "pixel"}),
        ("16x16", {"netD": "n_layers", "n_layers_D": 1}),
        ("70x70", {"netD": "basic"}),
        ("286x286", {"netD": "n_layers", "n_layers_D": 5}),
    ]),
    "cyclegan_losses": ("cycle_gan", [
        ("cycle alone", {"lambda_GAN": 0.0, "lambda_identity": 0.0}),
        ("GAN alone", {"lambda_A": 0.0, "lambda_B": 0.0, "lambda_identity": 0.0}),
        ("GAN + forward cycle", {"lambda_B": 0.0, "lambda_identity": 0.0}),
        ("GAN + backward cycle", {"lambda_A": 0.0, "lambda_identity": 0.0}),
        ("full", {"lambda_identity": 0.0}),
    ]),
}


class Variant(NamedTuple):
  """One point of the grid: a name for the report and the config changes ((field, value) pairs)."""
  name: str
  changes: tuple[tuple[str, Any], ...]


def _value(config, field: str, text: str) -> Any:
  """`text` as a value of config field `field` (its type); ValueError naming both otherwise."""
  current = config[field]
  try:
    if isinstance(current, bool):
      if text.lower() not in ("true", "false"):
        raise ValueError
      return text.lower() == "true"
    if field in NUMERIC:
      return float(text)
    return type(current)(text)
  except ValueError:
    kind = "a number" if field in NUMERIC else f"a {type(current).__name__}"
    raise ValueError(f"--sweep {field}={text}: {text!r} is not {kind} (config.{field} is {current!r}).") from None


def parse(specs: list[str], config) -> list[Variant]:
  """The grid of `--sweep` specs over `config`: 'FIELD=v1,v2,...' (repeatable: every combination)
  or 'preset=NAME'. ValueError, one line, for an unknown field (with the closest), a value of the
  wrong type, an empty list, or a preset of the other model."""
  axes: list[list[Variant]] = []
  for spec in specs:
    field, sep, values = spec.partition("=")
    field, values = field.strip(), [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not values:
      raise ValueError(f"--sweep {spec}: give FIELD=v1,v2,... (at least one value) or preset=NAME.")
    if field == "preset":
      if len(values) != 1 or values[0] not in PRESETS:
        close = difflib.get_close_matches(values[0], PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"--sweep {spec}: no such preset.{hint} Presets: {', '.join(PRESETS)}.")
      model, variants = PRESETS[values[0]]
      if config.model != model:
        raise ValueError(f"--sweep {spec}: a {model} preset; the config's model is {config.model!r}.")
      axes.append([Variant(name, tuple(changes.items())) for name, changes in variants])
      continue
    if field not in NUMERIC + STRUCTURAL:
      close = difflib.get_close_matches(field, NUMERIC + STRUCTURAL, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"--sweep {spec}: {field!r} cannot be swept.{hint} Fields: {', '.join(NUMERIC + STRUCTURAL)}.")
    axes.append([Variant(f"{field}={v}", ((field, _value(config, field, v)),)) for v in values])
  grid = []
  for combination in itertools.product(*axes):
    names = [v.name for v in combination if v.name]
    grid.append(Variant(", ".join(names), tuple(c for v in combination for c in v.changes)))
  return grid


def apply(config, changes) -> Any:
  """A copy of `config` with `changes` ((field, value) pairs) set."""
  config = config.copy_and_resolve_references()
  for field, value in changes:
    config[field] = value
  return config


def group_key(config, variant: Variant) -> tuple:
  """What the variant's step runs: its structural fields and which gates are open. Variants with
  one key train together as replicas of one compiled step."""
  changed = apply(config, variant.changes)
  return (tuple(changed[f] for f in STRUCTURAL), tuple(changed[g] > 0 for g in GATES))


def groups(config, variants: list[Variant]) -> list[list[int]]:
  """The variants' indices grouped by `group_key`, in order of first appearance."""
  keys: dict[tuple, list[int]] = {}
  for i, v in enumerate(variants):
    keys.setdefault(group_key(config, v), []).append(i)
  return list(keys.values())


def numeric_values(config, variant: Variant) -> tuple[tuple[str, float], ...]:
  """The variant's value of every field that is a value of the step (a study member's changes): all
  of them, as the group's config is another variant's."""
  changed = apply(config, variant.changes)
  return tuple((f, float(changed[f])) for f in NUMERIC)
