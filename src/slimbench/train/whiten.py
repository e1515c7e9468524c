"""A whitened first convolution (airbench, Jordan 2024): the stem starts as a ZCA-like whitening of image
patches, so the first epochs learn on decorrelated features instead of waiting for the stem to find them."""

from __future__ import annotations

import torch
from torch import nn

from slimbench.data.augment import normalize
from slimbench.errors import ConfigError


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> nn.Conv2d:
    """Set the first convolution's filters to the top eigenvectors of the patch covariance of uint8 ``images``,
    each scaled by 1/sqrt(eigenvalue), half of them negated (a ReLU then keeps both signs). Returns the layer."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1 or conv.in_channels != images.shape[1]:
        raise ConfigError("whiten_stem needs a model whose first layer is a plain convolution of the image")
    kh, kw = conv.kernel_size
    x = normalize(images, channels_last=False).float()
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1)  # N, C, H', W', kh, kw
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, conv.in_channels * kh * kw)
    covariance = torch.cov(patches.T.double())
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    half = (conv.out_channels + 1) // 2
    top = eigenvectors[:, -half:].flip(1).T / torch.sqrt(eigenvalues[-half:].flip(0) + eps).unsqueeze(1)
    filters = torch.cat([top, -top])[: conv.out_channels].float()
    conv.weight.copy_(filters.view_as(conv.weight).to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return conv
