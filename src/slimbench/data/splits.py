"""Validation split carved from the training set; the test set stays for the final report only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from slimbench.data.cifar import ImageDataset
from slimbench.errors import DatasetError


@dataclass
class Splits:
    """Index tensors into ``dataset.train_x`` for training and validation."""

    train_idx: torch.Tensor
    val_idx: torch.Tensor


def stratified_split(labels: torch.Tensor, val_size: int, seed: int = 0) -> Splits:
    """Hold out ``val_size`` images, the same share from each class, chosen by ``seed``."""
    n = len(labels)
    if val_size < 0 or val_size >= n:
        raise DatasetError(f"val_size must be in [0, {n - 1}], got {val_size}")
    if val_size == 0:
        return Splits(train_idx=torch.arange(n), val_idx=torch.empty(0, dtype=torch.long))
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    quota = [round(val_size * len(idx) / n) for idx in per_class]
    quota[-1] += val_size - sum(quota)  # rounding leftovers go to the last class
    val_parts = []
    for idx, q in zip(per_class, quota, strict=True):
        val_parts.append(idx[torch.randperm(len(idx), generator=gen)[:q]])
    val_idx = torch.cat(val_parts).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val_idx] = False
    return Splits(train_idx=torch.nonzero(mask).flatten(), val_idx=val_idx)


def split_dataset(dataset: ImageDataset, val_size: int, seed: int = 0) -> Splits:
    return stratified_split(dataset.train_y, val_size, seed)


def training_split(dataset: ImageDataset, data: dict[str, Any]) -> Splits:
    """The split a run made, from the data section of its config: the trainer, ``eval --split val`` and the
    calibration of later stages all call this, so calibration never draws the run's validation images. On a
    dataset smaller than the one the run held out from (the run's validation images cannot be in it), a tenth."""
    val_size = int(data.get("val_size", 5000))
    if val_size >= len(dataset.train_y):
        val_size = len(dataset.train_y) // 10
    return split_dataset(dataset, val_size, int(data.get("split_seed", 0)))
