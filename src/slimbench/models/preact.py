"""Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings"), CIFAR stem.

Laid out as the widely used kuangliu CIFAR version (11,171,146 parameters with 10 classes): 1x1
projection shortcuts without batch norm, taken from the pre-activated input; no final BN-ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import init_weights, make_stages, scaled
from slimbench.models.registry import register


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], width: float, num_classes: int) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        stages, in_planes = make_stages(PreActBlock, widths[0], widths, blocks)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register("preactresnet18", "Pre-activation ResNet-18, CIFAR stem (kuangliu layout)")
def preactresnet18(width: float = 1.0, num_classes: int = 10) -> nn.Module:
    return PreActResNet((2, 2, 2, 2), width, num_classes)
