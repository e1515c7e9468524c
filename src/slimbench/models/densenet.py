"""DenseNet-121 (Huang et al. 2017): growth 32, blocks (6, 12, 24, 16), bottleneck 4k, compression 0.5.

``stem="imagenet"``: 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (torchvision: 7,978,856 parameters with
1000 classes, the brief's figure). ``stem="cifar"``: one 3x3 conv to 2k channels, no pool (kuangliu:
6,956,298 with 10 classes). ``width`` scales the growth rate and the stem.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import check_stem, init_weights, scaled
from slimbench.models.registry import register


class DenseLayer(nn.Module):
    def __init__(self, in_planes: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], growth: int, stem: str, num_classes: int,
                 bn_size: int = 4, compression: float = 0.5) -> None:
        super().__init__()
        check_stem(stem)
        planes = 2 * growth
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(3, planes, 7, 2, 3, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, planes, 3, 1, 1, bias=False))
        features: list[nn.Module] = []
        for i, count in enumerate(blocks):
            for _ in range(count):
                features.append(DenseLayer(planes, growth, bn_size))
                planes += growth
            if i != len(blocks) - 1:
                out = int(planes * compression)
                features.append(Transition(planes, out))
                planes = out
        self.features = nn.Sequential(*features)
        self.norm = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.features(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register("densenet121", "DenseNet-121, stem 'cifar' (3x3) or 'imagenet' (7x7/2 + max-pool)")
def densenet121(stem: str = "cifar", width: float = 1.0, num_classes: int = 10) -> nn.Module:
    return DenseNet((6, 12, 24, 16), scaled(32, width), stem, num_classes)
