"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: the stem and the second stage keep stride 1,
so 32x32 inputs end at 4x4 instead of 1x1. Layers as torchvision's (2,236,682 parameters with 10
classes); ``width`` scales every stage, rounded to multiples of 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import init_weights, scaled
from slimbench.models.registry import register

# (expansion t, channels c, repeats n, first stride s); stage 2's stride is 1 for CIFAR (2 on ImageNet)
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


def conv_bn_relu(in_planes: int, out_planes: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu(in_planes, hidden, 1))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, width: float, num_classes: int, dropout: float) -> None:
        super().__init__()
        in_planes = scaled(32, width, 8)
        last = scaled(1280, max(1.0, width), 8)
        layers: list[nn.Module] = [conv_bn_relu(3, in_planes, 3, 1)]
        for t, c, n, s in CIFAR_STAGES:
            out = scaled(c, width, 8)
            for i in range(n):
                layers.append(InvertedResidual(in_planes, out, s if i == 0 else 1, t))
                in_planes = out
        layers.append(conv_bn_relu(in_planes, last, 1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(last, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.fc(self.dropout(x))


@register("mobilenetv2", "MobileNetV2, CIFAR strides (stem and stage 2 at stride 1)")
def mobilenetv2(width: float = 1.0, num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    return MobileNetV2(width, num_classes, dropout)
