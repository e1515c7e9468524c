"""Whole-batch augmentation as tensor ops on the training device.

Images arrive as uint8 NCHW tensors stored channels_last (so ``x.permute(0, 2, 3, 1)`` is contiguous
NHWC): crops and flips run on uint8 (a quarter of the bytes of float), then one fused multiply-add
normalises them into a float channels_last batch ready for the model. Every random draw comes from
the ``torch.Generator`` passed in, so a seed fixes the whole augmentation stream and a checkpointed
generator state resumes it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CIFAR_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR_STD = (0.24703223, 0.24348513, 0.26158784)


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size from each image."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1)
    padded = F.pad(nhwc, (0, 0, padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=gen, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)  # NHWC storage = channels_last NCHW


def random_flip(x: torch.Tensor, gen: torch.Generator, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2, or where the boolean ``flip`` says."""
    if flip is None:
        flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square (clipped at the border) centred anywhere in each image."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=gen, device=x.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=gen, device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    half = size // 2
    inside = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return x.masked_fill(inside.unsqueeze(1), 0)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD,
              channels_last: bool = True) -> torch.Tensor:
    """uint8 [0,255] -> float ``(x/255 - mean) / std`` as a single multiply-add."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=x.device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=x.device).view(1, -1, 1, 1)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    return torch.addcmul(shift, x.to(memory_format=memory).float(), scale).contiguous(memory_format=memory)


def _host_rng(gen: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from the torch one, for Beta samples torch cannot seed."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image and its soft target with a partner from the same batch."""
    lam = float(_host_rng(gen).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    return x.lerp(x[perm], 1.0 - lam), targets.lerp(targets[perm], 1.0 - lam)


def cutmix(x: torch.Tensor, targets: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a box from a partner image; the target mixes by the pasted area."""
    n, _, h, w = x.shape
    lam = float(_host_rng(gen).beta(alpha, alpha))
    perm = torch.randperm(n, generator=gen, device=x.device)
    cut = (1.0 - lam) ** 0.5
    bh, bw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=gen))
    cx = int(torch.randint(0, w, (1,), generator=gen))
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    area = (y1 - y0) * (x1 - x0) / (h * w)
    return out, targets.lerp(targets[perm], area)


@dataclass
class BatchAugmenter:
    """Training-time pipeline: crop, flip, cutout (uint8), normalise, then mixup/cutmix (float)."""

    crop_padding: int = 4
    flip: bool = True
    cutout_size: int = 0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    num_classes: int = 10
    channels_last: bool = True

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                 flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the float batch and targets: class indices, or soft targets when mixing. ``flip``: which
        images to mirror (alternating flips), instead of a coin per image."""
        x = random_crop(x, self.crop_padding, gen)
        if self.flip:
            x = random_flip(x, gen, flip)
        x = cutout(x, self.cutout_size, gen)
        x = normalize(x, channels_last=self.channels_last)
        if not self.mixes:
            return x, y
        soft = F.one_hot(y, self.num_classes).float()
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or bool(torch.rand(1, generator=gen) < 0.5)
        )
        if use_cutmix:
            return cutmix(x, soft, self.cutmix_alpha, gen)
        return mixup(x, soft, self.mixup_alpha, gen)
