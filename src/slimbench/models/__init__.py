"""Model zoo: a registry of CIFAR and ImageNet-style classifiers built from plain-data specs."""

from slimbench.models import densenet, mobilenet, preact, resnet_cifar, resnet_imagenet  # noqa: F401 (register)
from slimbench.models.registry import available_models, build_model, model_arguments, normalize_spec


def count_parameters(model, trainable_only: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Number of parameters (optionally only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["available_models", "build_model", "count_parameters", "model_arguments", "normalize_spec"]
