"""Training throughput of ResNet-20 (or another zoo model) on CIFAR-10: slimbench's trainer against a tutorial-style baseline.

Baseline: torch DataLoader with 2 workers over per-image PIL transforms (pad+random crop, flip,
ToTensor, Normalize), fp32, contiguous NCHW, as most CIFAR tutorials write it. slimbench: the real
``slimbench.train.train`` on the same images (tensor-resident uint8 data, whole-batch augmentation,
bf16 autocast where the CPU has native bf16), eager and torch.compile, each contiguous and channels_last, and
with ``--ddp`` the eager channels_last trainer in two processes of one thread each (``torchrun``, gloo DDP: each
process takes half of every batch of 128, so the recipe is the same but for batch-norm statistics over 64 images),
and with ``--ddp-compile`` the same two processes training a ``torch.compile``-d model (layout by ``channels_last: auto``);
``--ddp-variants`` names two-process variants with their layout, from the same list as ``--variants``.
Both at batch 128 with the same SGD optimiser. Throughput is images/s over training steps after warm-up.

Usage: python benchmarks/train_throughput.py [--data-dir DIR] [--images 6400] [--model resnet20] [--ddp] [--ddp-compile]
       [--ddp-variants compile-channels_last,...] [--variants eager-channels_last,...] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from slimbench.data import CIFAR_MEAN, CIFAR_STD, load_dataset
from slimbench.hardware import host
from slimbench.models import build_model
from slimbench.train import TrainConfig, train

BATCH = 128


class PilCifar(Dataset):
    """Per-image PIL pipeline, the way torchvision's transforms do it (torchvision itself is not installable here)."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images_hwc, labels
        self.mean = np.array(CIFAR_MEAN, np.float32).reshape(3, 1, 1)
        self.std = np.array(CIFAR_STD, np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = ImageOps.expand(Image.fromarray(self.images[i]), border=4, fill=0)
        dx, dy = np.random.randint(0, 9, 2)
        img = img.crop((dx, dy, dx + 32, dy + 32))
        if np.random.rand() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((arr - self.mean) / self.std), int(self.labels[i])


def baseline_throughput(images_hwc: np.ndarray, labels: np.ndarray, steps: int, warmup: int = 5,
                        spec: dict | None = None) -> float:
    torch.manual_seed(0)
    model = build_model(spec or {"model": "resnet20"})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = DataLoader(PilCifar(images_hwc, labels), batch_size=BATCH, shuffle=True, num_workers=2,
                        drop_last=True, persistent_workers=False)
    model.train()
    seen, started = 0, None
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            started, seen = time.perf_counter(), 0
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(x)
        if i == warmup + steps - 1:
            break
    assert started is not None
    return seen / (time.perf_counter() - started)


def slimbench_throughput(dataset, images: int, compile_model: bool, precision: str,
                         channels_last: bool = True, spec: dict | None = None) -> tuple[float, str]:
    """Two epochs of the real trainer over ``images`` images: the second epoch's rate (no compile time), and the
    memory format the trainer really used (it falls back to contiguous where channels_last is unsafe)."""
    cfg = TrainConfig.model_validate({
        "model": spec or {"model": "resnet20"}, "epochs": 2, "batch_size": BATCH, "compile": compile_model,
        "precision": precision, "channels_last": channels_last,
        "data": {"name": "cifar10", "val_size": 0, "train_subset": images},
        "report_test_each_epoch": False, "select": "last",
    })
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, run_dir=Path(tmp) / "run", progress=False, dataset=dataset)
    return result.history[-1]["images_per_s"], result.metrics["memory_format"]


def ddp_throughput(data_dir: str | None, images: int, precision: str, model: str, processes: int = 2,
                   compile_model: bool = False, channels_last: bool | None = None) -> tuple[float, str]:
    """The trainer in ``processes`` processes of one thread each, launched by torchrun as a user would: the second
    epoch's rate over all processes (rank 0 logs the global rate) and the layout it trained in. Without a layout,
    eager runs channels_last and a compiled run takes the one that ``channels_last: auto`` picks under compile."""
    default_layout = "auto" if compile_model else "true"
    layout = default_layout if channels_last is None else str(channels_last).lower()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "slimbench.cli", "train", "--model", model, "--epochs", "2", "--runs-root", tmp, "--name", "run",
                   "--no-progress", "--set", f"data.train_subset={images}", "--set", "data.val_size=0",
                   "--set", f"precision={precision}", "--set", f"channels_last={layout}",
                   "--set", f"compile={str(compile_model).lower()}",
                   "--set", f"batch_size={BATCH}", "--set", "report_test_each_epoch=false", "--set", "select=last"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", **({"SLIMBENCH_DATA": data_dir} if data_dir else {})}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"torchrun failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return history[-1]["images_per_s"], metrics["memory_format"]


def train_flops_per_image(spec: dict | None = None) -> float:
    """Forward + backward FLOPs of one image (conv/linear), counted by torch's own FLOP counter."""
    model = build_model(spec or {"model": "resnet20"})
    x = torch.randn(BATCH, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / BATCH


def cpu_peak_gflops(native_bf16: bool) -> tuple[float, str]:
    """Nominal peak: cores x clock x FLOPs/cycle (fp32 FMA on 2x256-bit pipes = 32; bf16 dot products = 64)."""
    mhz = 0.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    per_cycle = 64 if native_bf16 else 32
    cores = torch.get_num_threads()
    return cores * mhz * 1e6 * per_cycle / 1e9, f"{cores} cores x {mhz:.0f} MHz x {per_cycle} FLOP/cycle"


VARIANTS = {"eager-contiguous": (False, False), "eager-channels_last": (False, True),
            "compile-contiguous": (True, False), "compile-channels_last": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("SLIMBENCH_DATA"))
    parser.add_argument("--images", type=int, default=6400, help="training images per slimbench epoch")
    parser.add_argument("--baseline-steps", type=int, default=40)
    parser.add_argument("--model", default="resnet20", help="zoo model trained by both loops")
    parser.add_argument("--ddp", action="store_true", help="add the two-process (torchrun DDP) eager variant")
    parser.add_argument("--ddp-compile", action="store_true",
                        help="add the two-process (torchrun DDP) variant training a torch.compile-d model")
    parser.add_argument("--ddp-variants", default="",
                        help="two-process (torchrun DDP) variants with their layout, comma-separated from the same list")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"slimbench variants to time, comma-separated from {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds (baseline, then each variant, again): medians and per-round ratios, "
                             "since one run of each on a shared VM moves by 10-20%%")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    spec = {"model": args.model}
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    chosen_ddp = [v.strip() for v in args.ddp_variants.split(",") if v.strip()]
    unknown = [v for v in chosen + chosen_ddp if v not in VARIANTS]
    if unknown or args.rounds < 1:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}" if unknown
                         else "--rounds must be at least 1")

    dataset = load_dataset("cifar10", args.data_dir)
    native = host().native_bf16
    precision = "bf16" if native else "fp32"
    hwc = dataset.train_x.permute(0, 2, 3, 1).numpy()
    baseline_name = "baseline: DataLoader(2 workers) + PIL, fp32"
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        results = {baseline_name: baseline_throughput(hwc, dataset.train_y.numpy(), args.baseline_steps, spec=spec)}
        for variant in chosen:
            compile_model, channels_last = VARIANTS[variant]
            ips, layout = slimbench_throughput(dataset, args.images, compile_model, precision, channels_last, spec)
            results[f"slimbench {'torch.compile' if compile_model else 'eager'}, {precision}, {layout}"] = ips
        ddp_runs = [(False, None)] * args.ddp + [(True, None)] * args.ddp_compile + [VARIANTS[v] for v in chosen_ddp]
        for compile_model, channels_last in ddp_runs:
            ips, layout = ddp_throughput(args.data_dir, args.images, precision, args.model, compile_model=compile_model,
                                         channels_last=channels_last)
            mode = "torch.compile" if compile_model else "eager"
            results[f"slimbench {mode}, {precision}, {layout}, 2 processes x 1 thread (DDP)"] = ips
        rounds.append(results)
        if args.rounds > 1:
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k.split(': ')[0]} {v:.0f}" for k, v in results.items()),
                  flush=True)
    flops = train_flops_per_image(spec)
    peak, peak_rule = cpu_peak_gflops(native)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, native bf16: {native}")
    print(f"{args.model} training FLOPs per image (fwd+bwd): {flops / 1e6:.1f} M; CPU peak {peak:.0f} GFLOP/s ({peak_rule})")
    names = list(rounds[0])
    medians = {n: float(np.median([r[n] for r in rounds])) for n in names}
    ratios = {n: [r[n] / r[baseline_name] for r in rounds] for n in names}  # in round order
    header = "x baseline" if args.rounds == 1 else "x baseline (median; each round)"
    print(f"{'variant':<52} {'img/s':>8} {'% of peak':>9}  {header}")
    for name in names:
        spread = "" if args.rounds == 1 else "  (" + ", ".join(f"{x:.2f}" for x in ratios[name]) + ")"
        print(f"{name:<52} {medians[name]:>8.0f} {100 * medians[name] * flops / 1e9 / peak:>8.1f}%  "
              f"{float(np.median(ratios[name])):.2f}{spread}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "images_per_s": medians, "rounds": rounds,
                                         "ratio_to_baseline_per_round": ratios, "flops_per_image": flops,
                                         "peak_gflops": peak, "native_bf16": native}, indent=2))


if __name__ == "__main__":
    main()
