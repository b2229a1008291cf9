#!/usr/bin/env bash
# The GPU measurement of BENCHMARKS.md in one command: JAX (CUDA backend) against PyTorch on the
# same GPU, pix2pix and CycleGAN at batch 1, 4, 16 and 64, float32 and bfloat16.
#
#   bash benchmarks/gpu_run.sh OUT_DIR [extra step_time.py flags]
#
# Runs under the machine's python3, which must hold jax with CUDA and torch with CUDA. Wheels in
# .whl/ (flax, optax, chex, ml_collections at the project's pins), if present, are installed first
# into a private folder. Writes OUT_DIR/gpu_results.json and OUT_DIR/gpu_log.txt.
set -o pipefail
out=${1:?usage: gpu_run.sh OUT_DIR [step_time.py flags]}; shift
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gantx-site .whl/*.whl || exit
  export PYTHONPATH=/tmp/gantx-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, torch.cuda.get_device_name())"
  python3 benchmarks/step_time.py --device gpu --torch-python python3 --batch-sizes 1,4,16,64 \
      --cyclegan-batch-sizes 1,4,16,64 --sample-s 0.3 --warmup 2 --steps 3 --no-cached-compile \
      --out "$out/gpu_results.json" "$@"
} 2>&1 | tee "$out/gpu_log.txt"
