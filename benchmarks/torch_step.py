"""Time the official PyTorch training iterations on the CPU (the baseline gantx is compared to).

pix2pix:   unet_256 G (batch norm, dropout on), basic D on 6 channels (batch norm), vanilla GAN
           + 100*L1, 256x256, batch sizes from --batch-sizes.
cycle_gan: resnet_9blocks G_A/G_B (instance norm, no dropout), basic D_A/D_B on 3 channels
           (instance norm), lsgan, cycle 10, identity 0.5, pool 50, 256x256, batch 1.

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
    p.add_argument("--batch-sizes", default="1,4", help="pix2pix batch sizes, comma separated (default 1,4)")
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


def _time_steps(step, real_A, real_B, warmup: int, steps: int):
    for _ in range(warmup):
        step(real_A, real_B)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(real_A, real_B)
        times.append(time.perf_counter() - t0)
    return times


def _peak_rss_bytes() -> int:
    """VmHWM of this process: its own peak resident memory (ru_maxrss would include the parent's
    at fork time, which Linux carries across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> dict:
    args = _parse_args(argv)
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import CycleGANStep, Pix2PixStep, param_count

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"pix2pix", "cycle_gan"}
    if unknown:
        raise SystemExit(f"unknown --models entries: {sorted(unknown)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    size = args.image_size

    def images(bs: int):
        return torch.rand(bs, 3, size, size) * 2 - 1

    load_start = os.getloadavg()[0]
    results = []
    if "pix2pix" in models:
        printed = False
        for bs in batch_sizes:
            step = Pix2PixStep(netG="unet_256", norm="batch", use_dropout=True, netD="basic")
            if not printed:
                print(f"params pix2pix G unet_256 (batch, dropout): {param_count(step.netG):,}")
                print(f"params pix2pix D basic 6ch (batch):         {param_count(step.netD):,}")
                printed = True
            A, B = images(bs), images(bs)
            t = _time_steps(step, A, B, args.warmup, args.steps)
            r = {"model": "pix2pix", "batch_size": bs, "image_size": size,
                 "step_s_median": statistics.median(t), "step_s_all": t}
            print(f"pix2pix   bs={bs}: median {r['step_s_median']:.3f} s  all {[round(x, 3) for x in t]}")
            results.append(r)
            del step

    if "cycle_gan" in models:
        bs = 1
        step = CycleGANStep(netG="resnet_9blocks", norm="instance", use_dropout=False, netD="basic")
        for name in ("G_A", "G_B", "D_A", "D_B"):
            net = getattr(step, "net" + name)
            kind = "resnet_9blocks" if name[0] == "G" else "basic 3ch"
            print(f"params cycle_gan {name} {kind} (instance):  {param_count(net):,}")
        A, B = images(bs), images(bs)
        t = _time_steps(step, A, B, args.warmup, args.steps)
        r = {"model": "cycle_gan", "batch_size": bs, "image_size": size,
             "step_s_median": statistics.median(t), "step_s_all": t}
        print(f"cycle_gan bs={bs}: median {r['step_s_median']:.3f} s  all {[round(x, 3) for x in t]}")
        results.append(r)

    out = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "steps": args.steps,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "results": results,
        "peak_rss_bytes": _peak_rss_bytes(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
