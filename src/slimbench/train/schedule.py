"""Optimisers and learning-rate schedules.

The schedule is a pure function of the global step, so a resumed run sets exactly the learning rate
the uninterrupted run would have set, with no scheduler object to keep in sync.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimbench.train.config import OptimizerConfig, ScheduleConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                     norm_bias_lr_scale: float = 1.0) -> list[dict]:
    """Split parameters so that 1-d tensors (BN scales/shifts, biases) can skip weight decay, and batch-norm
    shifts can take a larger learning rate (``lr_scale``, read by ``set_lr``)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    norm_shifts = {id(m.bias) for m in model.modules() if norm_bias_lr_scale != 1.0
                   and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None and m.bias.requires_grad}
    groups: list[dict] = []
    if decay_norm_and_bias:
        groups.append({"params": [p for p in trainable if id(p) not in norm_shifts], "weight_decay": weight_decay})
    else:
        groups.append({"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay})
        groups.append({"params": [p for p in trainable if p.ndim <= 1 and id(p) not in norm_shifts],
                       "weight_decay": 0.0})
    if norm_shifts:
        groups.append({"params": [p for p in trainable if id(p) in norm_shifts], "lr_scale": norm_bias_lr_scale,
                       "weight_decay": weight_decay / norm_bias_lr_scale if decay_norm_and_bias else 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, cfg.norm_bias_lr_scale)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier on the base learning rate at ``step`` (0-based, counted in optimiser steps)."""
    total = max(1, steps_per_epoch * epochs)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    epoch = step / steps_per_epoch
    floor = cfg.min_lr_fraction
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** int(epoch // cfg.step_size)
    if cfg.name == "multistep":
        return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.name == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # onecycle: rise from lr/25 to lr over pct_start, then fall to the floor; cosine or linear (a triangle)
    peak = int(cfg.pct_start * total)
    start = 1 / 25

    def shape(fraction: float) -> float:  # 0 -> 0, 1 -> 1
        return fraction if cfg.anneal == "linear" else 0.5 * (1 - math.cos(math.pi * fraction))

    if step < peak:
        return start + (1 - start) * shape(step / max(1, peak))
    progress = (step - peak) / max(1, total - peak)
    return floor + (1 - floor) * (1 - shape(min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
