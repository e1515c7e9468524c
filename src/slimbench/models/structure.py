"""A pruned architecture as data: the shape-defining attributes of every layer, and how to rebuild it.

Structured pruning changes layer widths. Instead of pickling the pruned modules (which would need full
unpickling to load), an artifact stores, per module name, the attributes that fix its shape
(``in_channels``, ``out_channels``, ``groups``, ``num_features``, ``in_features``, ``out_features``, and
the ``structure_fields`` a custom module declares). Rebuilding = build the float architecture from its
spec, then :func:`apply_structure` re-creates each listed layer at its recorded size; the state dict
then loads as usual.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from slimbench.errors import CheckpointError

_CONV_FIELDS = ("in_channels", "out_channels", "groups")
_FIELDS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: _CONV_FIELDS,
    nn.Conv1d: _CONV_FIELDS,
    nn.BatchNorm2d: ("num_features",),
    nn.BatchNorm1d: ("num_features",),
    nn.Linear: ("in_features", "out_features"),
}


def _fields(module: nn.Module) -> tuple[str, ...]:
    declared = getattr(type(module), "structure_fields", None)
    if declared:
        return tuple(declared)
    return _FIELDS.get(type(module), ())


def capture_structure(model: nn.Module) -> dict[str, dict[str, int]]:
    """Shape-defining attributes of every layer that has them, keyed by module name."""
    structure = {}
    for name, module in model.named_modules():
        fields = _fields(module)
        if fields:
            structure[name] = {"type": type(module).__name__, **{f: int(getattr(module, f)) for f in fields}}
    return structure


def structure_changes(original: nn.Module, pruned: nn.Module) -> dict[str, dict[str, int]]:
    """Only the layers whose shape differs from the unpruned architecture (what an artifact stores)."""
    before = capture_structure(original)
    return {name: entry for name, entry in capture_structure(pruned).items() if before.get(name) != entry}


def _resized(module: nn.Module, entry: dict[str, Any]) -> nn.Module:
    if isinstance(module, nn.Conv2d | nn.Conv1d):
        return type(module)(
            entry["in_channels"], entry["out_channels"], module.kernel_size, module.stride, module.padding,
            module.dilation, entry["groups"], module.bias is not None, module.padding_mode,
        )
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        return type(module)(entry["num_features"], module.eps, module.momentum, module.affine,
                            module.track_running_stats)
    if isinstance(module, nn.Linear):
        return nn.Linear(entry["in_features"], entry["out_features"], module.bias is not None)
    # A custom module declaring structure_fields holds no shaped parameters of its own: set the attributes.
    for key in _fields(module):
        setattr(module, key, entry[key])
    return module


def apply_structure(model: nn.Module, structure: dict[str, dict[str, Any]], source: str = "artifact") -> nn.Module:
    """Re-create the layers named in ``structure`` at their recorded sizes (weights are loaded afterwards)."""
    modules = dict(model.named_modules())
    for name, entry in structure.items():
        module = modules.get(name)
        if module is None:
            raise CheckpointError(f"{source}: pruned structure names layer {name!r}, which the architecture lacks")
        if type(module).__name__ != entry.get("type"):
            raise CheckpointError(
                f"{source}: layer {name!r} is a {type(module).__name__}, the pruned structure says {entry.get('type')}"
            )
        missing = [f for f in _fields(module) if f not in entry]
        if missing:
            raise CheckpointError(f"{source}: pruned structure of {name!r} lacks {', '.join(missing)}")
        replacement = _resized(module, entry)
        if replacement is not module:
            replace_module(model, name, replacement, modules)
    return model


def replace_module(model: nn.Module, name: str, replacement: nn.Module,
                   modules: dict[str, nn.Module] | None = None) -> None:
    """Put ``replacement`` where the submodule called ``name`` (dotted) is."""
    modules = modules if modules is not None else dict(model.named_modules())
    parent_name, _, child = name.rpartition(".")
    setattr(modules[parent_name] if parent_name else model, child, replacement)
