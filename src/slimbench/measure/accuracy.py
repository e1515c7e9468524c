"""Accuracy, loss, per-class accuracy and confusion matrix of a model on a labelled split."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.data.augment import normalize
from slimbench.errors import SlimbenchError
from slimbench.hardware import host, host_from_cpuinfo, read_cpuinfo


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


def describe_device(device: torch.device) -> str:
    """The device type and the chip's name, e.g. ``cuda: NVIDIA H100 80GB HBM3``: run records name the
    hardware their timings came from (the real chip, even where a host profile is assumed)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        name = host_from_cpuinfo(read_cpuinfo()).cpu_name
        return f"cpu: {name}" if name != "unknown" else "cpu"
    return device.type


def resolve_precision(precision: str, device: torch.device) -> str:
    """Training arithmetic. ``auto``: bf16 where the device computes it natively, fp32 otherwise
    (emulated bf16 on an AVX2 CPU trains ResNet-20 at about 20 against 250 img/s in fp32)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if host().native_bf16 else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for training steps; fp32 (and devices without autocast) run as they are."""
    if precision in ("fp32", "stored") or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


EVAL_PRECISIONS = ("stored", "bf16", "fp16")


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """fp32 convolutions and matrix products in fp32, not TF32. PyTorch lets cuDNN run fp32 convolutions in TF32 (a
    10-bit mantissa) by default on recent GPUs: a stored-precision accuracy must not depend on that, least of all
    a low-bit model's, whose quantizers round at step boundaries (the same 3-bit weights scored 88.95% on a lent
    H200 with TF32 allowed and 89.20% on a CPU in fp32; BENCHMARKS section 33)."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


class _RoundOutputs:
    """Float arithmetic whose every layer output is rounded to a half dtype: the semantics of half-precision
    inference with float accumulation (what fp16/bf16 kernels compute), at fp32 speed on any CPU. The
    weights are the stored half values, exactly representable in float."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.model = copy.deepcopy(model).float()
        self.dtype = dtype
        for module in self.model.modules():
            if not list(module.children()):  # leaves: conv, norm, activation, pooling, linear
                # inputs too: a functional op between layers (a residual add) rounds its result in half arithmetic
                module.register_forward_pre_hook(self._round_inputs)
                module.register_forward_hook(self._round)

    def _round_inputs(self, _module: nn.Module, inputs: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(x.to(self.dtype).float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                     for x in inputs)

    def _round(self, _module: nn.Module, _inputs: object, output: object) -> object:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.to(self.dtype).float()
        return output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype).float())


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
    precision: str = "stored",
    channels_last: bool = True,
) -> Evaluation:
    """Evaluate on uint8 NCHW ``images``; the model's device is used, and it is left in eval mode.

    ``stored`` (the default, and the only precision a recorded accuracy comes from) evaluates the model as it
    is stored: fp32 models in fp32 on every machine, fp16/bf16 models with half-precision semantics (every
    layer's output rounded to their dtype), QAT models as their quantizers define. ``bf16``/``fp16`` run a
    float model under autocast instead: a speed option, whose results callers must label as such.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise SlimbenchError(f"expected images shaped [N, 3, H, W], got {list(images.shape)}")
    if precision not in EVAL_PRECISIONS:
        raise SlimbenchError(f"evaluation precision must be one of {', '.join(EVAL_PRECISIONS)}, got {precision!r}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    model.eval()
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if dtype in (torch.float16, torch.bfloat16):
        if precision != "stored":
            raise SlimbenchError(f"a {str(dtype).replace('torch.', '')} model evaluates in its stored precision only")
        forward = _RoundOutputs(model, dtype)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total_loss = 0.0
    outside = 0  # predictions of an output the dataset has no class for (a 1000-way head on CIFAR-10): wrong
    arithmetic = full_fp32() if precision == "stored" else autocast(device, precision)
    with arithmetic:
        for start in range(0, len(images), batch_size):
            x = normalize(images[start:start + batch_size].to(device), channels_last=channels_last)
            y = labels[start:start + batch_size].to(device)
            logits = forward(x)
            total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            pred = logits.argmax(1).cpu()
            inside = pred < num_classes
            outside += int((~inside).sum())
            confusion += torch.bincount(y.cpu()[inside] * num_classes + pred[inside],
                                        minlength=num_classes**2).view(num_classes, num_classes)
    count = int(confusion.sum()) + outside
    correct = int(confusion.diag().sum())
    per_class = (confusion.diag().float() / torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes]
                 .clamp(min=1)).tolist()
    return Evaluation(
        loss=total_loss / max(1, count), accuracy=correct / max(1, count), per_class=per_class,
        confusion=confusion.tolist(), count=count,
    )
