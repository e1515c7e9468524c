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
