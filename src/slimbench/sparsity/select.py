"""Which layers a pruning step may touch: by type, by name pattern, and the protected classifier."""

from __future__ import annotations

from fnmatch import fnmatch

from torch import nn

from slimbench.errors import ConfigError
from slimbench.sparsity.config import PruneConfig

_TYPES = {"conv": (nn.Conv2d, nn.Conv1d), "linear": (nn.Linear,)}


def classifier_name(model: nn.Module) -> str | None:
    """The last Linear layer in module order: the classifier head of every zoo model."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def select_layers(model: nn.Module, config: PruneConfig) -> dict[str, nn.Module]:
    """The prunable layers, by name; a selection that matches nothing is an error, not a silent no-op."""
    types = tuple(t for kind in config.layers for t in _TYPES[kind])
    head = classifier_name(model) if config.protect_classifier else None
    chosen = {}
    for name, module in model.named_modules():
        if not isinstance(module, types) or name == head:
            continue
        if config.include and not any(fnmatch(name, pattern) for pattern in config.include):
            continue
        if any(fnmatch(name, pattern) for pattern in config.exclude):
            continue
        chosen[name] = module
    if not chosen:
        hint = ""
        if config.layers == ["linear"] and head is not None and config.protect_classifier:
            hint = f" (the only Linear layer is the classifier {head!r}: allow it with protect_classifier: false)"
        raise ConfigError(f"no layer to prune: layers={config.layers}, include={config.include}, "
                          f"exclude={config.exclude}{hint}")
    return chosen
