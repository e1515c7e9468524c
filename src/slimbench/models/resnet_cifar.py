"""CIFAR ResNets of He et al. 2016 (depth 6n+2: 20, 32, 44, 56, 110), 16/32/64 channels, and ResNet-8 (one block
per stage), MLPerf Tiny's image-classification model.

Shortcut option A: identity, subsampled and zero-padded in channels where the shape changes (no
parameters). Option B: a 1x1 convolution + batch norm where the shape changes, identity elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import init_weights, make_stages, scaled
from slimbench.models.registry import register


class PadShortcut(nn.Module):
    """Option A: stride-2 subsampling and zero channels appended, no weights.

    Its output channel i is its input channel i, so channels cannot be pruned on one side alone: structured
    pruning treats it as a barrier (``channel_barrier``) and leaves the channels it joins untouched.
    """

    channel_barrier = True
    structure_fields = ("in_channels", "out_channels")

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.in_channels = in_planes
        self.out_channels = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x


class BasicBlock(nn.Module):
    residual_end = "bn2"  # the norm that closes the residual branch (zero_init_residual starts it at 0)

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, shortcut: str = "B", width: float = 1.0, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        blocks = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_planes = make_stages(lambda i, o, s: BasicBlock(i, o, s, shortcut), widths[0], widths, (blocks,) * 3)
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(in_planes, num_classes)
        self.reset_weights()

    def reset_weights(self) -> None:
        init_weights(self)
        nn.init.kaiming_normal_(self.fc.weight)  # the paper's CIFAR nets use He init for fc too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _family(depth: int):
    def build(shortcut: str = "B", width: float = 1.0, num_classes: int = 10) -> nn.Module:
        return CifarResNet(depth, shortcut=shortcut, width=width, num_classes=num_classes)

    return build


for _depth in (20, 32, 44, 56, 110):
    register(f"resnet{_depth}", f"CIFAR ResNet-{_depth} (He et al. 2016), shortcut A or B")(_family(_depth))

# MLPerf Tiny v1 image classification (resnet_v1_eembc): 16/32/64 filters, one block per stage, 1x1 projection
# shortcuts, 12.5M MACs. The reference (Keras) gives its convolutions biases and its shortcuts no batch norm;
# here convolutions feed batch norm (a bias would be redundant) and the shortcut has one, as in ResNet-20:
# 78,042 parameters, the same MACs.
register("resnet8", "MLPerf Tiny's ResNet-8 (16/32/64 filters, one block per stage), 12.5M MACs")(_family(8))
