"""The distillation teacher's forward pass, timed per memory layout: what a distilled epoch pays for its teacher.

The trainer runs the teacher under ``torch.no_grad`` and the step's autocast on each augmented batch of 128. This
times that call for each teacher artifact given, contiguous against channels_last (weights and input), in the
precision the trainer would pick on this machine, interleaved round by round so that the machine's noise falls
on both layouts alike. It prints ms per batch, seconds per epoch of 45,000 images, and the ratio.

Usage: python benchmarks/teacher_layout.py TEACHER.pt [TEACHER.pt ...] [--rounds 5] [--batches 4]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from slimbench.artifact.core import load_model
from slimbench.hardware import host
from slimbench.measure.accuracy import autocast, resolve_precision

BATCH = 128
EPOCH_BATCHES = math.ceil(45_000 / BATCH)


def time_batches(model: torch.nn.Module, images: torch.Tensor, batches: int, precision: str) -> float:
    """Seconds per forward pass of ``images``, after one warm-up pass."""
    device = torch.device("cpu")
    with torch.no_grad(), autocast(device, precision):
        model(images)
        start = time.perf_counter()
        for _ in range(batches):
            model(images)
    return (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(f"machine: {host().describe()}; precision {precision}; {torch.get_num_threads()} threads; batch {BATCH}")
    print(f"{'teacher':<48} {'contiguous ms':>14} {'channels_last ms':>17} {'ratio':>6} {'s/epoch (c -> cl)':>19}")
    for path in args.teachers:
        model, _ = load_model(path)
        model.eval()
        images = torch.randn(BATCH, 3, 32, 32)
        layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
        times: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(args.rounds):
            for name, layout in layouts.items():
                model = model.to(memory_format=layout)
                times[name].append(time_batches(model, images.contiguous(memory_format=layout), args.batches, precision))
        best = {name: min(values) for name, values in times.items()}
        ratio = best["contiguous"] / best["channels_last"]
        per_epoch = f"{best['contiguous'] * EPOCH_BATCHES:.0f} -> {best['channels_last'] * EPOCH_BATCHES:.0f}"
        print(f"{path:<48} {best['contiguous'] * 1e3:>14.1f} {best['channels_last'] * 1e3:>17.1f} "
              f"{ratio:>5.2f}x {per_epoch:>19}")


if __name__ == "__main__":
    main()
