"""Accuracy, loss, per-class accuracy and confusion matrix of a model on a labelled split."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.data.augment import normalize
from slimbench.errors import SlimbenchError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SlimbenchError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SlimbenchError("device 'cuda' asked for, but no CUDA device is available")
    return device


def read_cpuinfo() -> str | None:
    """Linux's /proc/cpuinfo (the CPU's name and instruction-set flags); None where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def describe_device(device: torch.device) -> str:
    """The device type and the chip's name, e.g. ``cuda: NVIDIA H100 80GB HBM3``: run records name the
    hardware their timings came from."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        for line in (read_cpuinfo() or "").splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    return device.type


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and
    runs an order of magnitude slower than fp32 (measured: ResNet20 training 20 vs 250 img/s on AVX2)."""
    flags = read_cpuinfo() or ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the device computes it natively, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32" or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]
    count: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 1000,
    precision: str = "auto",
    channels_last: bool = True,
) -> Evaluation:
    """Evaluate on uint8 NCHW ``images``; the model's device is used, and it is left in eval mode."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise SlimbenchError(f"expected images shaped [N, 3, H, W], got {list(images.shape)}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype  # a half-precision model gets half-precision inputs
    precision = resolve_precision(precision, device)
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total_loss = 0.0
    outside = 0  # predictions of an output the dataset has no class for (a 1000-way head on CIFAR-10): wrong
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device), channels_last=channels_last).to(dtype)
        y = labels[start:start + batch_size].to(device)
        with autocast(device, precision):
            logits = model(x)
        total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        pred = logits.argmax(1).cpu()
        inside = pred < num_classes
        outside += int((~inside).sum())
        confusion += torch.bincount(y.cpu()[inside] * num_classes + pred[inside], minlength=num_classes**2).view(
            num_classes, num_classes
        )
    count = int(confusion.sum()) + outside
    correct = int(confusion.diag().sum())
    per_class = (confusion.diag().float() / torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes]
                 .clamp(min=1)).tolist()
    return Evaluation(
        loss=total_loss / max(1, count), accuracy=correct / max(1, count), per_class=per_class,
        confusion=confusion.tolist(), count=count,
    )
