"""Datasets (CIFAR-10/100, synthetic), validation splits and whole-batch augmentation."""

from __future__ import annotations

from pathlib import Path

from slimbench.data.augment import CIFAR_MEAN, CIFAR_STD, BatchAugmenter, normalize
from slimbench.data.cifar import DATA_ENV, SOURCES, ImageDataset, load_cifar
from slimbench.data.splits import Splits, split_dataset, stratified_split, training_split
from slimbench.data.synthetic import make_synthetic
from slimbench.errors import DatasetError

DATASETS = ("cifar10", "cifar100", "synthetic")


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> ImageDataset:
    """Load a dataset by name; ``synthetic`` needs no files."""
    if name == "synthetic":
        return make_synthetic()
    if name in SOURCES:
        return load_cifar(name, data_dir=data_dir, download=download)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "DATA_ENV", "BatchAugmenter", "ImageDataset", "Splits",
    "load_cifar", "load_dataset", "make_synthetic", "normalize", "split_dataset", "stratified_split", "training_split",
]
