"""TorchScript export (for libtorch/C++ users), traced and checked against the eager model.

PyTorch marks TorchScript deprecated in favour of torch.export; it is offered because libtorch deployments
still load it. ONNX is the format slimbench recommends and quantizes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from slimbench.artifact import atomic_write
from slimbench.data import normalize
from slimbench.runtimes.onnx import Parity, compare_logits


@torch.no_grad()
def export_torchscript(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (3, 32, 32)) -> Path:
    path = Path(path)
    model = model.eval().float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(1, *input_shape))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    atomic_write(path, buffer.getvalue())
    return path


@torch.no_grad()
def check_torchscript_parity(model: nn.Module, path: str | Path, images: torch.Tensor, labels: torch.Tensor | None = None,
                             max_abs_diff: float = 1e-4) -> Parity:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    x = normalize(images, channels_last=False)
    with torch.no_grad():
        reference, exported = model.eval().float()(x), loaded(x)
    return compare_logits(reference, exported, labels, path, max_abs_diff, min_agreement=1.0)
