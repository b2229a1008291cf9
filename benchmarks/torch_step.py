"""Time the official PyTorch training iterations (the baseline gantx is compared to).

pix2pix:   unet_256 G (batch norm, dropout on), basic D on 6 channels (batch norm), vanilla GAN
           + 100*L1, 256x256.
cycle_gan: resnet_9blocks G_A/G_B (instance norm, no dropout), basic D_A/D_B on 3 channels
           (instance norm), lsgan, cycle 10, identity 0.5, pool 50, 256x256.
Each at every size of --batch-sizes, on --device (cpu, or cuda with cudnn.benchmark on as the
official train.py sets it, and PyTorch's default TF32 convolutions), in every --dtypes entry
(bfloat16: the step under torch.autocast, CUDA only).

Run with the separate torch environment (torch is not in the project venv):

    .venv-torch/bin/python benchmarks/torch_step.py --threads 2 --warmup 2 --steps 5

Prints the parameter counts of the networks it builds, one line per timed configuration, and
ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default 5)")
    p.add_argument("--batch-sizes", default="1", help="batch sizes, comma separated (default 1)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument("--dtypes", default="float32", help="float32 and/or bfloat16 (autocast; cuda only)")
    p.add_argument("--sample-s", type=float, default=0.0,
                   help="> 0: each timed sample runs as many steps as take about this long (measured on the"
                        " last warmup step), one device sync per sample; 0 (default): one step per sample")
    p.add_argument("--models", default="pix2pix,cycle_gan", help="comma separated subset of pix2pix,cycle_gan")
    p.add_argument("--image-size", type=int, default=256, help="square image side (default 256)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def cpu_name() -> str:
    """The CPU model (also used by step_time.py, which imports this torch-free helper)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_samples(run, sync, warmup: int, samples: int, sample_s: float) -> tuple[list[float], int, float]:
    """Times `run()` (one train step) for both frameworks (step_time.py imports this).

    `warmup` untimed steps (at least one when sample_s > 0), then `samples` timed samples, each
    ended by `sync()` (wait for the device): one step each, or with sample_s > 0 as many steps as
    the last warmup step says take about sample_s seconds. Returns (seconds per step of each
    sample, steps per sample, warmup seconds).
    """
    start, last = time.perf_counter(), 0.0
    for _ in range(max(warmup, 1 if sample_s > 0 else 0)):
        t0 = time.perf_counter()
        run()
        sync()
        last = time.perf_counter() - t0
    warmup_s = time.perf_counter() - start
    chunk = max(1, round(sample_s / last)) if sample_s > 0 else 1
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(chunk):
            run()
        sync()
        times.append((time.perf_counter() - t0) / chunk)
    return times, chunk, warmup_s


def official_step(model: str, device):
    """The official iteration of `model` (pix2pix or cycle_gan) as the benchmarks run it (module
    docstring) on a torch `device`; step(A, B) runs one optimizer step."""
    from torch_reference import CycleGANStep, Pix2PixStep

    if model == "pix2pix":
        return Pix2PixStep(netG="unet_256", norm="batch", use_dropout=True, netD="basic", device=device)
    return CycleGANStep(netG="resnet_9blocks", norm="instance", use_dropout=False, netD="basic", device=device)


def step_runner(step, A, B, dtype: str):
    """run() for one step on A, B; under torch.autocast(bfloat16) (CUDA) for dtype 'bfloat16'."""
    import torch

    if dtype != "bfloat16":
        return lambda: step(A, B)

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return step(A, B)
    return run


def reset_peak_rss() -> bool:
    """Resets this process's VmHWM (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """VmHWM of this process since the last reset: its own peak resident memory (ru_maxrss would
    include the parent's at fork time, which Linux carries across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> dict:
    args = _parse_args(argv)
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import param_count

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"pix2pix", "cycle_gan"}
    if unknown:
        raise SystemExit(f"unknown --models entries: {sorted(unknown)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if set(dtypes) - {"float32", "bfloat16"} or ("bfloat16" in dtypes and args.device != "cuda"):
        raise SystemExit(f"--dtypes must be float32 (and bfloat16 with --device cuda), got {dtypes}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    size = args.image_size
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # as the official train.py (preprocess != scale_width)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    load_start = os.getloadavg()[0]
    results = []
    for model in models:
        step = official_step(model, device)
        nets = ("G", "D") if model == "pix2pix" else ("G_A", "G_B", "D_A", "D_B")
        for name in nets:
            print(f"params {model} {name}: {param_count(getattr(step, 'net' + name)):,}")
        del step
        for dtype in dtypes:
            for bs in batch_sizes:
                step = official_step(model, device)  # fresh networks and optimizers per case
                A = torch.rand(bs, 3, size, size, device=device) * 2 - 1
                B = torch.rand(bs, 3, size, size, device=device) * 2 - 1
                run = step_runner(step, A, B, dtype)
                reset_peak_rss()
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    t, chunk, _ = time_samples(run, sync, args.warmup, args.steps, args.sample_s)
                except torch.OutOfMemoryError as e:
                    print(f"{model} bs={bs} {dtype}: out of memory: {str(e).splitlines()[0]}")
                    results.append({"model": model, "batch_size": bs, "dtype": dtype, "image_size": size,
                                    "error": "out of memory"})
                    del step, run, A, B
                    continue
                r = {"model": model, "batch_size": bs, "dtype": dtype, "image_size": size,
                     "step_s_median": statistics.median(t), "step_s_all": t, "steps_per_sample": chunk,
                     "peak_rss_bytes": _peak_rss_bytes()}
                if cuda:
                    r["peak_device_bytes"] = torch.cuda.max_memory_allocated(device)
                print(f"{model} bs={bs} {dtype}: median {r['step_s_median']:.4f} s  all {[round(x, 4) for x in t]}"
                      f" ({chunk} steps per sample)", flush=True)
                results.append(r)
                del step, run, A, B

    out = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "steps": args.steps,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "device": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "results": results,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
