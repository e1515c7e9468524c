"""Static checks that explain poor results before any training: each finding comes with a one-line fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimbench.artifact import load_model
from slimbench.errors import SlimbenchError
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


def diagnose_target(target: str | Path, num_classes: int | None = None, input_size: int = 32,
                    budget: str | None = None) -> tuple[str, list[Finding]]:
    """Diagnose an artifact file, or a model name with optional ``name:key=value,...`` arguments; ``budget``
    (``ram=256KB,flash=1MB`` or a board) adds the memory checks at the model's own bits."""
    limits = parse_budget(budget) if budget else None
    path = Path(target)
    if path.exists():
        from slimbench.artifact import is_exported_file, read_sidecar
        from slimbench.measure.memory import float_twin, stored_bits

        if is_exported_file(path):  # an ONNX or LiteRT file: its sidecar's architecture, structure and bits
            sidecar = read_sidecar(path)
            spec, structure, quant, lineage = (sidecar["spec"], sidecar.get("structure"), sidecar.get("quant"),
                                               sidecar.get("lineage"))
            model = float_twin(spec, structure)  # the same shapes and layers; its weights are not the file's
            lineage = None  # so the checks of trained weights are skipped
        else:
            model, artifact = load_model(path)
            spec, structure, quant, lineage = artifact.spec, artifact.structure, artifact.quant, artifact.lineage
        classes = num_classes or int(spec.get("num_classes", 10))
        findings = diagnose(model, classes, input_size, trained=bool(lineage))
        if limits:
            weight_bits, activation_bits = stored_bits(quant)
            lowbit = (quant or {}).get("mode") == "qat"
            measured = float_twin(spec, structure) if lowbit else model.float()
            findings += check_budget(measured, limits, input_size, activation_bits, weight_bits)
        return str(path), findings
    name, _, args = str(target).partition(":")
    spec: dict = {"model": name}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        spec[key] = int(value) if value.isdigit() else float(value) if value.replace(".", "", 1).isdigit() else value
    spec = normalize_spec(spec)
    model = build_model(spec)
    findings = diagnose(model, num_classes or 10, input_size)
    return str(target), findings + (check_budget(model, limits, input_size) if limits else [])



# Boards as their memory: (RAM, flash) in bytes, from the vendors' data sheets.
BOARDS = {
    "nano33ble": (256 * 1024, 1024 * 1024),  # Arduino Nano 33 BLE (nRF52840, Cortex-M4F)
    "stm32f746": (320 * 1024, 1024 * 1024),  # STM32F746 Discovery (Cortex-M7), MLPerf Tiny's reference board
    "esp32": (520 * 1024, 4 * 1024 * 1024),  # ESP32 (Xtensa LX6), 4 MB flash modules
}
_UNITS = {"b": 1, "kb": 1024, "kib": 1024, "mb": 1024 * 1024, "mib": 1024 * 1024}


def parse_budget(text: str) -> tuple[int | None, int | None]:
    """``ram=256KB,flash=1MB`` (either part may be left out) or a board name: (RAM bytes, flash bytes)."""
    if text in BOARDS:
        return BOARDS[text]
    budget: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        number = value.strip().lower().rstrip("s")
        unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if number.endswith(u)), "b")
        try:
            amount = float(number[: len(number) - len(unit)] if unit != "b" or number.endswith("b") else number)
        except ValueError:
            amount = -1
        if key not in ("ram", "flash") or amount <= 0:
            raise SlimbenchError(f"budget must look like ram=256KB,flash=1MB or be a board ({', '.join(BOARDS)}), "
                                 f"got {text!r}")
        budget[key] = int(amount * _UNITS[unit])
    return budget.get("ram"), budget.get("flash")


def check_budget(model: nn.Module, budget: tuple[int | None, int | None], input_size: int = 32,
                 activation_bits: float = 32, weight_bits: dict[str, float] | float = 32) -> list[Finding]:
    """Findings for a RAM/flash budget: which layer breaks it and what would fix it, with the numbers."""
    from slimbench.measure.memory import flash_bytes, memory_report

    ram, flash = budget
    report = memory_report(model, (3, input_size, input_size), activation_bits, weight_bits)
    findings: list[Finding] = []
    if ram is not None and report.peak_ram_bytes > ram:
        at8 = report.peak_ram_bytes * min(8.0, activation_bits) / activation_bits
        findings.append(Finding(
            "error", "ram", f"peak RAM {report.peak_ram_bytes / 1024:.1f} KiB at {report.peak_at} (batch 1, "
            f"{activation_bits:g}-bit activations) exceeds the budget of {ram / 1024:.1f} KiB",
            (f"8-bit activations (int8 export or QAT) take it to {at8 / 1024:.1f} KiB; " if activation_bits > 8 else "")
            + f"else narrow or prune the channels of the stage around {report.peak_at}, or downsample earlier "
            "(a stride in the stem quarters every later map)"))
    if flash is not None and report.flash_bytes > flash:
        layers = sorted(((name, m.weight.numel()) for name, m in model.named_modules()
                         if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)), key=lambda item: -item[1])[:3]
        bits = weight_bits if not isinstance(weight_bits, dict) else report.weight_bits
        findings.append(Finding(
            "error", "flash", f"flash {report.flash_bytes / 1024:.1f} KiB ({bits:.3g}-bit weights) exceeds the budget of "
            f"{flash / 1024:.1f} KiB; the largest layers: " + ", ".join(f"{n} ({c:,} weights)" for n, c in layers),
            (f"int8 weights take it to {flash_bytes(model, 8) / 1024:.1f} KiB; " if bits > 8 else "")
            + "structured pruning of the largest layers, a smaller width, or fewer bits (QAT) shrink it further"))
    if not findings:
        findings.append(Finding("info", "budget", f"fits: peak RAM {report.peak_ram_bytes / 1024:.1f} KiB, flash "
                                f"{report.flash_bytes / 1024:.1f} KiB", "nothing to do"))
    return findings
