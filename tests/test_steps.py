"""The train steps: they learn something, are bitwise deterministic, compile once, and follow
the official objectives (gradient penalty applied, identity loss switchable)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_data
from conftest import tiny_config
from reference_data import STEP_CASES

from gantx import convert, state as state_lib, steps
from gantx.config import base_config


def _batch(config, seed=1, n=2):
  k1, k2 = jax.random.split(jax.random.key(seed))
  size = (n, config.crop_size, config.crop_size)
  return {"A": jax.random.uniform(k1, size + (config.input_nc,), minval=-1, maxval=1),
          "B": jax.random.uniform(k2, size + (config.output_nc,), minval=-1, maxval=1)}


@functools.cache
def _compiled(model: str, **overrides):
  config = tiny_config(model, **overrides)
  nets = state_lib.build_networks(config, 10)
  init = lambda key: state_lib.init_state(config, nets, key, (config.crop_size, config.crop_size))
  return config, nets, init, jax.jit(steps.train_step_fn(config, nets))


def _arrays(tree):
  """Leaves as numpy arrays (PRNG keys as their key data)."""
  as_np = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
  return [as_np(x) for x in jax.tree.leaves(tree)]


def _differs(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


@pytest.mark.parametrize("model,names", [
    ("pix2pix", {"G_GAN", "G_L1", "D_real", "D_fake", "lr"}),
    ("cycle_gan", {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "lr"}),
])
def test_step_updates_every_net_and_is_bitwise_deterministic(model, names):
  config, nets, init, step = _compiled(model)
  batch = _batch(config)
  s0 = init(jax.random.key(0))
  s1, m1 = step(s0, batch)
  assert set(m1) == names
  assert int(s1.step) == 1
  for name in s0.params:
    assert _differs(s0.params[name], s1.params[name]), name
  s1_again, m1_again = step(init(jax.random.key(0)), batch)
  for a, b in zip(_arrays((s1, m1)), _arrays((s1_again, m1_again))):
    np.testing.assert_array_equal(a, b)
  s2, _ = step(s1, _batch(config, seed=2))
  assert step._cache_size() == 1  # a new batch and a stepped state do not retrace
  assert _differs(s1.params, s2.params)


def test_cycle_gan_pools_fill_with_the_fakes():
  config, _, init, step = _compiled("cycle_gan")
  s1, _ = step(init(jax.random.key(0)), _batch(config))
  for name in ("fake_A", "fake_B"):
    assert int(s1.pools[name].num_imgs) == 2
    assert float(jnp.abs(s1.pools[name].images[:2]).sum()) > 0
    assert float(jnp.abs(s1.pools[name].images[2:]).sum()) == 0


def test_identity_loss_is_off_when_lambda_identity_is_zero():
  config, _, init, step = _compiled("cycle_gan", lambda_identity=0.0)
  _, m = step(init(jax.random.key(0)), _batch(config))
  assert float(m["idt_A"]) == 0.0 and float(m["idt_B"]) == 0.0 and float(m["cycle_A"]) > 0


def test_wgangp_applies_the_gradient_penalty():
  """Same init and batch, lambda_gp 10 vs 0: D's update differs only through the penalty."""
  outs = []
  for lambda_gp in (10.0, 0.0):
    config, _, init, step = _compiled("pix2pix", gan_mode="wgangp", lambda_gp=lambda_gp)
    s1, m = step(init(jax.random.key(0)), _batch(config))
    outs.append((s1, m))
  assert _differs(outs[0][0].params["D"], outs[1][0].params["D"])
  assert float(outs[0][1]["D_real"]) == float(outs[1][1]["D_real"])  # same D before its step


def test_generator_step_sees_the_updated_discriminator():
  """With lambda_L1 = 0, G's update comes only through D. Adam's first step moves each
  parameter by -lr * sign(grad), so the signs of G's update must match G's gradient through
  D *after* its step (all significant entries), and not the one through the old D."""
  config, nets, init, step = _compiled("pix2pix", lambda_L1=0.0, norm="instance", no_dropout=True)
  batch = _batch(config)
  s0 = init(jax.random.key(0))
  s1, _ = step(s0, batch)
  delta = np.concatenate([(b - a).ravel() for a, b in zip(_arrays(s0.params["G"]), _arrays(s1.params["G"]))])

  def sign_agreement(d_params):
    def loss(g):
      fake = nets.modules["G"].apply({"params": g}, batch["A"], train=True)
      pred = nets.modules["D"].apply({"params": d_params}, jnp.concatenate([batch["A"], fake], -1), train=True)
      return jnp.mean(jax.nn.softplus(-pred))  # vanilla GAN, target real
    grads = np.concatenate([g.ravel() for g in _arrays(jax.grad(loss)(s0.params["G"]))])
    significant = np.abs(grads) > 1e-3 * np.abs(grads).max()
    return np.mean(np.sign(delta[significant]) == -np.sign(grads[significant]))

  assert sign_agreement(s1.params["D"]) == 1.0
  assert sign_agreement(s0.params["D"]) < 0.99


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_adam_update_matches_optax(model):
  """steps._update recomputes optax.adam's step from the new moments (to keep XLA from copying
  the donated state): the same parameters and optimizer state as `tx.update` +
  `apply_updates`, to float32 rounding, over three steps of both optimizers."""
  import optax
  config = tiny_config(model)
  nets = state_lib.build_networks(config, 10)
  state = state_lib.init_state(config, nets, jax.random.key(0), (config.crop_size, config.crop_size))
  grads = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)) * 1e-2, state.params)

  @functools.partial(jax.jit, static_argnums=1)
  def reference(state, group, g):
    params = {n: state.params[n] for n in g}
    tx = state_lib.optimizer(config.lr_policy, state.hparams)
    updates, opt_state = tx.update(g, state.opt_state[group], params)
    return {**state.params, **optax.apply_updates(params, updates)}, {**state.opt_state, group: opt_state}

  for group, names in (("G", nets.generators), ("D", nets.discriminators)):
    g = {n: grads[n] for n in names}
    s = state
    for _ in range(3):
      ours = jax.jit(lambda s: steps._update(steps.StepSpec.from_config(config), group, names, s, g))(s)
      theirs = reference(s, group, g)
      assert jax.tree.structure(ours) == jax.tree.structure(theirs)
      for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-9)
      s = s.replace(params=ours[0], opt_state=ours[1])


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_bfloat16_step_keeps_the_float32_state(model):
  """compute_dtype='bfloat16' (widths 16, so convolutions take the bfloat16 GEMM path): the
  state keeps its float32 structure (checkpoints are unchanged), the losses are finite and
  close to the float32 step's (XLA's own convolutions: the same numbers as the float32 GEMM forms,
  test_models.py, and a faster compile)."""
  config, _, init, step = _compiled(model, ngf=16, ndf=16, conv_impl="xla")
  config16, _, init16, step16 = _compiled(model, ngf=16, ndf=16, conv_impl="gemm", compute_dtype="bfloat16")
  batch = _batch(config)
  s0 = init(jax.random.key(0))
  s1, m32 = step(s0, batch)
  s1_16, m16 = step16(init16(jax.random.key(0)), batch)
  assert jax.tree.structure(s1) == jax.tree.structure(s1_16)
  assert [a.dtype for a in jax.tree.leaves(s1)] == [a.dtype for a in jax.tree.leaves(s1_16)]
  for k in m32:
    assert np.isfinite(float(m16[k])), k
    np.testing.assert_allclose(float(m16[k]), float(m32[k]), rtol=0.05, atol=0.02, err_msg=k)


def _input_dilated_convs(stablehlo: str) -> list[tuple[str, bool]]:
  """Each input-dilated (lhs_dilate > 1) convolution of a StableHLO module, and whether its
  kernel operand is a `reverse` over the kernel's spatial dimensions. XLA:GPU hands an
  input-dilated convolution to cuDNN (as its backward-data call) only then; any other one runs
  as a forward convolution, the slow form the H100 profile found (BENCHMARKS.md)."""
  lines, found = stablehlo.splitlines(), []
  for i, line in enumerate(lines):
    m = re.search(r"stablehlo\.convolution\((%[\w.#]+), (%[\w.#]+)\).*?x\[([\w, ]+)\]", line)
    dilate = re.search(r"lhs_dilate = \[([\d, ]+)\]", line)
    if not m or not dilate or set(dilate.group(1).replace(" ", "").split(",")) == {"1"}:
      continue
    kernel_dims = m.group(3).replace(" ", "").split(",")
    spatial = ", ".join(str(d) for d, name in enumerate(kernel_dims) if name.isdigit())
    rhs = m.group(2)  # SSA names are local to a function, and defined above their uses
    defining = next((l for l in reversed(lines[:i]) if re.match(rf"\s*{re.escape(rhs)}(:\d+)? = ", l)), "")
    found.append((line.strip(), "stablehlo.reverse" in defining and f"dims = [{spatial}]" in defining))
  return found


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_xla_convolutions_map_to_cudnn_calls(model, compute_dtype):
  """conv_impl='xla' (GPUs): every input-dilated convolution of the train step, forward and
  backward, has a kernel reversed over its spatial dimensions, so XLA:GPU runs each as a cuDNN
  call (a transposed conv's weight gradient by autodiff had none). Lowering only: nothing
  compiles."""
  config, nets, init, step = _compiled(model, conv_impl="xla", compute_dtype=compute_dtype)
  state = jax.eval_shape(init, jax.random.key(0))
  batch = jax.eval_shape(lambda: _batch(config))
  convs = _input_dilated_convs(step.lower(state, batch).as_text())
  assert len(convs) >= 8  # the transposed convs' forwards and the strided convs' input gradients
  assert [line for line, reversed_kernel in convs if not reversed_kernel] == []


@pytest.mark.parametrize("case", STEP_CASES, ids=[c["name"] for c in STEP_CASES])
def test_two_pix2pix_steps_equal_pytorch(references, case):
  """Two steps from the same weights on the same batches as the official optimize_parameters
  (tests/torch_steps.py): the same losses, parameters, and batch-norm buffers as PyTorch updates
  them (running statistics with the unbiased variance; num_batches_tracked counting G once and D
  three times a step, as the official code calls them)."""
  folder = references / "steps"
  config = base_config("pix2pix")
  config.update(dict(netG=case["netG"], netD=case["netD"], ngf=case["ngf"], ndf=case["ndf"], norm=case["norm"],
                     no_dropout=True, batch_size=case["batch"], crop_size=case["size"], load_size=case["size"]))
  nets = state_lib.build_networks(config, 1000)  # the learning rate stays 2e-4
  state = state_lib.init_state(config, nets, jax.random.key(0), (case["size"],) * 2)
  params, stats = dict(state.params), dict(state.batch_stats)
  for name in ("G", "D"):
    variables = convert.load_pth(str(folder / f"{case['name']}_{name}.pth"), nets.modules[name],
                                 state_lib.input_channels(config, name))
    params[name], stats[name] = variables["params"], variables["batch_stats"]
  state = state.replace(params=params, batch_stats=stats)  # with fresh Adam states
  ref = np.load(folder / f"{case['name']}.npz")
  step = jax.jit(steps.train_step_fn(config, nets))
  for i, (a, b) in enumerate(reference_data.pix2pix_batches(case), start=1):
    state, metrics = step(state, {"A": a, "B": b})
    for name in ("G_GAN", "G_L1", "D_real", "D_fake"):
      np.testing.assert_allclose(metrics[name], ref[f"loss/{i}/{name}"], rtol=1e-5, err_msg=f"step {i} {name}")
  for name in ("G", "D"):
    ours = convert.to_torch({"params": state.params[name], "batch_stats": state.batch_stats[name]}, nets.modules[name])
    assert ours.keys() == {k[2:] for k in ref.files if k.startswith(f"{name}/")}
    for key, value in ours.items():
      want = ref[f"{name}/{key}"]
      if key.endswith("num_batches_tracked"):
        assert int(value) == int(want) == 2 * (1 if name == "G" else 3), key
      elif key.endswith(("running_mean", "running_var")):
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
      else:  # two Adam steps of 2e-4: rounding in a tiny gradient can move an entry by up to ~lr
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-5, err_msg=f"{name} {key}")
