"""A model's forward pass without gradients, timed per memory layout: what a distilled epoch pays for its
teacher, and what an epoch's evaluation pays.

The trainer runs the teacher under ``torch.no_grad`` and the step's autocast on each augmented batch of 128
(``--precision auto``, the default: the precision the trainer would pick on this machine), and evaluates the
validation split in the model's stored precision in batches of 1,000 (``--precision stored --batch 1000``).
This times that call for each artifact given, contiguous against channels_last (weights and input),
interleaved round by round so that the machine's noise falls on both layouts alike. It prints ms per batch,
seconds per 45,000 images, and the ratio. ``--compiled`` times the same two layouts again under torch.compile as
a teacher would be compiled (static shapes, weights frozen into the graph; the trainer keeps it eager, BENCHMARKS
section 29), after the eager rounds, its first call (the compilation) left out.

Usage: python benchmarks/forward_layout.py MODEL.pt [MODEL.pt ...] [--precision auto|stored] [--batch 128]
       [--rounds 5] [--batches 4] [--compiled]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from slimbench.artifact.core import load_model
from slimbench.hardware import host
from slimbench.measure.accuracy import autocast, resolve_precision

EPOCH_IMAGES = 45_000


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
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", choices=["auto", "stored"], default="auto")
    parser.add_argument("--compiled", action="store_true", help="also time both layouts under torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    precision = resolve_precision("auto", torch.device("cpu")) if args.precision == "auto" else "stored"
    epoch_batches = math.ceil(EPOCH_IMAGES / args.batch)
    print(f"machine: {host().describe()}; precision {precision}; {torch.get_num_threads()} threads; "
          f"batch {args.batch}")
    print(f"{'model':<48} {'contiguous ms':>14} {'channels_last ms':>17} {'ratio':>6} {'s/45k (c -> cl)':>19}")
    for path in args.teachers:
        model, _ = load_model(path)
        model.eval()
        images = torch.randn(args.batch, 3, 32, 32)
        layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
        # each layout its own copy: Module.to changes the model in place
        runs = {name: copy.deepcopy(model).to(memory_format=layout) for name, layout in layouts.items()}
        report(path, time_rounds(runs, images, layouts, args, precision), epoch_batches)
        if args.compiled:
            runs = {name: torch.compile(run, dynamic=False, options={"freezing": True}) for name, run in runs.items()}
            report(f"{path} (compiled)", time_rounds(runs, images, layouts, args, precision), epoch_batches)


def time_rounds(runs: dict[str, torch.nn.Module], images: torch.Tensor, layouts: dict[str, torch.memory_format],
                args: argparse.Namespace, precision: str) -> dict[str, float]:
    """The best seconds per batch of each layout over interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, layout in layouts.items():
            times[name].append(time_batches(runs[name], images.contiguous(memory_format=layout), args.batches,
                                            precision))
    return {name: min(values) for name, values in times.items()}


def report(label: str, best: dict[str, float], epoch_batches: int) -> None:
    ratio = best["contiguous"] / best["channels_last"]
    per_epoch = f"{best['contiguous'] * epoch_batches:.0f} -> {best['channels_last'] * epoch_batches:.0f}"
    print(f"{label:<48} {best['contiguous'] * 1e3:>14.1f} {best['channels_last'] * 1e3:>17.1f} "
          f"{ratio:>5.2f}x {per_epoch:>19}")


if __name__ == "__main__":
    main()
