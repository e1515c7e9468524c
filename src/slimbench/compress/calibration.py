"""Data for compression stages: the dataset a model was trained on, and calibration images from its training
split (never the validation or test images, which stay for selection and the report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimbench.artifact import Artifact
from slimbench.artifact import training_config as lineage_training_config
from slimbench.data import ImageDataset, load_dataset, training_split


def training_config(artifact: Artifact) -> dict[str, Any]:
    """The resolved config of the last training step in the lineage ({} when there is none)."""
    return lineage_training_config(artifact.lineage)


def dataset_for(artifact: Artifact, dataset: ImageDataset | None = None,
                data_dir: str | Path | None = None) -> ImageDataset:
    """``dataset`` when given, else the one the lineage trained on (same name and download setting), from
    ``data_dir`` when given, else from the folder the lineage names (else $SLIMBENCH_DATA or the cache)."""
    if dataset is not None:
        return dataset
    data = training_config(artifact).get("data") or {}
    return load_dataset(data.get("name", "cifar10"), data_dir if data_dir is not None else data.get("dir"),
                        download=bool(data.get("download", True)))


def calibration_indices(dataset: ImageDataset, artifact: Artifact, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` seeded indices into ``dataset.train_x``, drawn from the split the model trained on."""
    train_idx = training_split(dataset, training_config(artifact).get("data") or {}).train_idx
    pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
    return train_idx[pick[:count]]


def validation_images(dataset: ImageDataset, artifact: Artifact) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The validation split the model was selected on (images, labels), or None when it trained without one."""
    val_idx = training_split(dataset, training_config(artifact).get("data") or {}).val_idx
    if not len(val_idx):
        return None
    return dataset.train_x[val_idx], dataset.train_y[val_idx]
