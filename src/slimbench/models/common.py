"""Small helpers shared by the model families."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """Channels after a width multiplier, rounded to a multiple of ``divisor`` (never below it)."""
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # do not round down by more than 10%
        rounded += divisor
    return rounded


def init_weights(model: nn.Module) -> None:
    """He-normal for convolutions, unit BN scale, small normal for classifiers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def reinitialize(model: nn.Module) -> nn.Module:
    """Draw every weight anew as the model's constructor does (its ``reset_weights``, else :func:`init_weights`),
    at the layer sizes it has now: a pruned structure trained from scratch keeps only its shape."""
    reset = getattr(model, "reset_weights", None)
    if callable(reset):
        reset()
    else:
        init_weights(model)
    for module in model.modules():  # running statistics too: a fresh model has seen no batch
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return model


def check_stem(stem: str) -> None:
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")


def make_stages(block: Callable[[int, int, int], nn.Module], in_planes: int, widths: list[int],
                counts: tuple[int, ...]) -> tuple[list[nn.Sequential], int]:
    """Residual stages: each after the first halves the resolution in its first block."""
    stages = []
    for stage, (planes, count) in enumerate(zip(widths, counts, strict=True)):
        layers = []
        for i in range(count):
            layers.append(block(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
            in_planes = planes
        stages.append(nn.Sequential(*layers))
    return stages, in_planes
