"""Model zoo: a registry of CIFAR and ImageNet-style classifiers built from plain-data specs."""

from slimbench.models import airnet, densenet, mobilenet, preact, resnet_cifar, resnet_imagenet  # noqa: F401 (register)
from slimbench.models.registry import available_models, build_model, model_arguments, normalize_spec


def weight_parameters(model):  # type: ignore[no-untyped-def]
    """(name, tensor) of the model's parameters that count as weights: the one rule every count follows.
    Learned quantizer step sizes of low-bit layers (one per channel or tensor) fold into the integer kernels'
    scales: they are not weights."""
    from slimbench.models.lowbit import QUANTIZER_MARK

    return [(name, p) for name, p in model.named_parameters() if QUANTIZER_MARK not in name]


def count_parameters(model, trainable_only: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Number of weights (optionally only those that require grad); quantizer step sizes are not counted."""
    return sum(p.numel() for _, p in weight_parameters(model) if p.requires_grad or not trainable_only)


__all__ = ["available_models", "build_model", "count_parameters", "model_arguments", "normalize_spec", "weight_parameters"]
