"""A shallow, wide convolutional network after airbench's (Jordan 2024, arXiv:2404.00498): a 2x2 stem meant to
start as a whitening of image patches (``whiten_stem: true`` in the trainer), then three groups of
conv 3x3 -> max-pool 2 -> batch norm -> GELU -> conv 3x3 -> batch norm -> GELU, a global max-pool and a
linear classifier. Six 3x3 convolutions instead of ResNet-20's nineteen: an epoch costs about half the MACs.

airbench's own widths (64/256/256, about 2M parameters) are far over the budget of small CIFAR models; the
default widths here (40/64/112) give 262,658 parameters and 23.0M MACs, under ResNet-20's 272,474 and 40.8M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimbench.models.common import init_weights
from slimbench.models.registry import register


class ConvGroup(nn.Module):
    def __init__(self, in_planes: int, planes: int, late_pool: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.late_pool = late_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.late_pool:  # both convolutions at the input's resolution: 4x the second one's MACs, same weights
            x = F.gelu(self.bn1(self.conv1(x)))
            return F.gelu(self.bn2(F.max_pool2d(self.conv2(x), 2)))
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))


class AirNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int], stem_channels: int, num_classes: int, late_pool: int = 0,
                 dirac: bool = False) -> None:
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {widths!r}")
        if stem_channels < 1:
            raise ValueError(f"stem_channels must be positive, got {stem_channels}")
        if not 0 <= late_pool <= 3:
            raise ValueError(f"late_pool counts leading groups, 0 to 3, got {late_pool}")
        self.conv1 = nn.Conv2d(3, stem_channels, 2, 1, 0, bias=True)  # 32x32 -> 31x31, as airbench's
        groups, in_planes = [], stem_channels
        for index, planes in enumerate(widths):
            groups.append(ConvGroup(in_planes, planes, late_pool=index < late_pool))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = groups
        self.fc = nn.Linear(in_planes, num_classes)
        self.dirac = dirac
        self.reset_weights()

    def reset_weights(self) -> None:
        init_weights(self)
        if self.dirac:  # each 3x3 convolution starts by passing its inputs through: a residual path without the add
            for group in (self.layer1, self.layer2, self.layer3):
                for conv in (group.conv1, group.conv2):
                    nn.init.dirac_(conv.weight.data[:conv.in_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(global_max_pool(x).flatten(1))


def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    """A max-pool over the whole map. LiteRT has no lowering for adaptive_max_pool2d, and torch.compile's backward
    of x.amax(dim=(2, 3)) under bf16 autocast gives NaN gradients (torch 2.13, CPU)."""
    return F.max_pool2d(x, (int(x.shape[-2]), int(x.shape[-1])))


# torch.fx (peak RAM, structure) keeps it as one call: its kernel size is read from the shape, which a Proxy has not
torch.fx.wrap("global_max_pool")


@register("airnet", "airbench's shallow conv-pool-BN-GELU net at small widths (default 40/64/112: 263k params, 23M MACs)")
def airnet(widths: tuple[int, int, int] | list[int] = (40, 64, 112), stem_channels: int = 24,
           num_classes: int = 10, late_pool: int = 0, dirac: bool = False) -> nn.Module:
    """``late_pool``: how many leading groups pool after their second convolution rather than after their first.
    Parameters are the budget that binds (ResNet-20's 272k); MACs have room (23.0M of 40.8M), and a convolution
    at a higher resolution spends MACs without weights (``late_pool=1``: 33.6M).
    ``dirac``: the first ``in_channels`` filters of each 3x3 convolution start as the identity (airbench's
    initialization; its ablation needs 18 epochs to 94% with it against 21 without)."""
    return AirNet(tuple(int(w) for w in widths), int(stem_channels), num_classes, int(late_pool), bool(dirac))
