"""Static checks that explain poor results before any training: each finding comes with a one-line fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbench.artifact import load_model
from slimbench.models import build_model, normalize_spec


@dataclass
class Finding:
    severity: str  # "error": will cost accuracy or break a stage; "warn": likely a problem; "info": worth knowing
    check: str
    message: str
    fix: str


@torch.no_grad()
def _spatial_trace(model: nn.Module, size: int) -> list[tuple[str, nn.Module, int]]:
    """(name, module, output width) for every conv and pooling layer, in execution order."""
    trace: list[tuple[str, nn.Module, int]] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o, name=name: trace.append((name, mod, o.shape[-1])))
        for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)
    ]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return trace


def diagnose(model: nn.Module, num_classes: int = 10, input_size: int = 32, trained: bool = False) -> list[Finding]:
    """Checks on a built model; ``trained`` says its weights come from training (enables the BN check)."""
    findings: list[Finding] = []
    trace = _spatial_trace(model, input_size)
    convs = [(n, m, w) for n, m, w in trace if isinstance(m, nn.Conv2d)]
    if convs:
        stem_width = next((w for _, m, w in trace[:3] if isinstance(m, nn.MaxPool2d)), convs[0][2])
        if input_size <= 64 and input_size // stem_width >= 4:
            findings.append(Finding(
                "error", "stem", f"the stem shrinks the {input_size}x{input_size} input to {stem_width}x{stem_width} "
                "before the first block (an ImageNet stem: 7x7/2 convolution + max-pool)",
                "use a CIFAR stem (3x3, stride 1, no pool): stem='cifar'",
            ))
        last_width = convs[-1][2]
        if last_width <= 1:
            findings.append(Finding(
                "warn", "resolution", f"the last convolutions run on {last_width}x{last_width} maps: 3x3 kernels see "
                "only padding around one pixel", "downsample less (CIFAR stem or strides) for small inputs",
            ))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features != num_classes:
        findings.append(Finding(
            "error", "classifier", f"the classifier has {linears[-1].out_features} outputs for {num_classes} classes",
            f"build the model with num_classes={num_classes}",
        ))
    depthwise = [n for n, m, _ in convs if m.groups > 1 and m.groups == m.in_channels]
    if depthwise:
        findings.append(Finding(
            "info", "depthwise", f"{len(depthwise)} depthwise convolutions: their few weights per channel make "
            "per-tensor low-bit quantization lossy", "quantize them per channel, or keep them at 8 bits",
        ))
    padded = [n for n, m in model.named_modules() if type(m).__name__ == "PadShortcut"]
    if padded:
        findings.append(Finding(
            "info", "shortcut", f"{len(padded)} parameter-free zero-padding shortcuts (option A) tie the channel "
            "layout of consecutive stages", "prefer shortcut='B' for structured pruning through residuals",
        ))
    params = sum(p.numel() for p in model.parameters())
    if params > 5.6e6:
        findings.append(Finding(
            "warn", "size", f"{params:,} parameters: the score's parameter term alone is {params / 5.6e6:.2f} "
            "(the brief's best model scores about 0.07 in total)", "start from a CIFAR ResNet-20/32/56 or a width < 1",
        ))
    if trained:
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.running_var is not None]
        untouched = [m for m in norms if torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)]
        if norms and len(untouched) == len(norms):
            findings.append(Finding(
                "error", "batchnorm", "every batch-norm layer still has its initial running statistics: the model "
                "was trained in eval mode, or never trained", "call model.train() in the training loop",
            ))
    return findings


def diagnose_target(target: str | Path, num_classes: int | None = None, input_size: int = 32) -> tuple[str, list[Finding]]:
    """Diagnose an artifact file, or a model name with optional ``name:key=value,...`` arguments."""
    path = Path(target)
    if path.exists():
        model, artifact = load_model(path)
        classes = num_classes or int(artifact.spec.get("num_classes", 10))
        return str(path), diagnose(model, classes, input_size, trained=bool(artifact.lineage))
    name, _, args = str(target).partition(":")
    spec: dict = {"model": name}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        spec[key] = int(value) if value.isdigit() else float(value) if value.replace(".", "", 1).isdigit() else value
    spec = normalize_spec(spec)
    return str(target), diagnose(build_model(spec), num_classes or 10, input_size)
