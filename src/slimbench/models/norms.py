"""Batch norm's running statistics, recomputed from images instead of inherited from training.

A batch norm evaluates with moving averages that lag the weights: pruning leaves them out of date, and at low
bits each training step moves validation accuracy by tenths of a point (BENCHMARKS section 36). One helper
serves the trainer's ``precise_bn``, the structure benchmark and the step-size benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's batch norms, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def update_batch_norms(model: nn.Module, batches: Iterable[torch.Tensor], *, restart: bool = True) -> int:
    """Run ``batches`` (model-ready inputs) through ``model`` with only its batch norms in training mode, so
    weights, quantizers and dropout behave as at evaluation. ``restart``: forget the running statistics and
    make them the plain mean over these batches; otherwise the moving averages carry on with each norm's
    momentum, as a training step would move them. The model's modes and momenta are restored. Returns the
    number of images seen; with ``restart`` and no images at all, the statistics stay as they were and
    ``ValueError`` is raised."""
    norms = batch_norms(model)
    tracked = [norm for norm in norms if norm.track_running_stats] if restart else []  # what a refusal restores
    before = [(n.running_mean.clone(), n.running_var.clone(), n.num_batches_tracked.clone()) for n in tracked]
    modes = [m.training for m in model.modules()]
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        if restart:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative mean over the batches
        norm.train()
    seen = 0
    try:
        for inputs in batches:
            model(inputs)
            seen += len(inputs)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        for module, mode in zip(model.modules(), modes, strict=True):
            module.training = mode
    if restart and not seen and norms:
        for norm, (mean, var, count) in zip(tracked, before, strict=True):
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(count)
        raise ValueError("no images to re-estimate batch norm statistics on")
    return seen
