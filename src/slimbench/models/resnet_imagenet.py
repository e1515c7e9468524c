"""ResNet-18/34 (basic blocks, 64..512 channels) with either stem.

``stem="imagenet"``: 7x7/2 convolution + 3x3/2 max-pool, as torchvision and the brief used; on 32x32
inputs it leaves 8x8 feature maps after the stem, which costs accuracy. ``stem="cifar"``: 3x3/1, no
pool (the kuangliu CIFAR version, 11,173,962 parameters for ResNet-18 with 10 classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import check_stem, init_weights, make_stages, scaled
from slimbench.models.registry import register
from slimbench.models.resnet_cifar import BasicBlock


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], stem: str, width: float, num_classes: int) -> None:
        super().__init__()
        check_stem(stem)
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.pool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = make_stages(lambda i, o, s: BasicBlock(i, o, s, "B"), widths[0], widths, blocks)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register("resnet18", "ResNet-18, stem 'cifar' (3x3, no pool) or 'imagenet' (7x7/2 + max-pool)")
def resnet18(stem: str = "cifar", width: float = 1.0, num_classes: int = 10) -> nn.Module:
    return ResNet((2, 2, 2, 2), stem, width, num_classes)


@register("resnet34", "ResNet-34, stem 'cifar' (3x3, no pool) or 'imagenet' (7x7/2 + max-pool)")
def resnet34(stem: str = "cifar", width: float = 1.0, num_classes: int = 10) -> nn.Module:
    return ResNet((3, 4, 6, 3), stem, width, num_classes)
