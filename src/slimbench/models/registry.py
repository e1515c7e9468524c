"""Model registry: a spec (plain data) names a constructor and its arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from slimbench.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return wrap


def available_models() -> dict[str, str]:
    """Registered model names and one-line descriptions."""
    return dict(sorted(_DESCRIPTIONS.items()))


def model_arguments(name: str) -> dict[str, Any]:
    """The constructor arguments a model accepts, with their defaults."""
    fn = _lookup(name)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()}


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def normalize_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults so that a spec names every argument: two equal models get equal specs."""
    if "model" not in spec:
        raise ModelError("model spec needs a 'model' key")
    args = {k: v for k, v in spec.items() if k != "model"}
    allowed = model_arguments(spec["model"])
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ModelError(
            f"model {spec['model']!r} has no argument {unknown[0]!r}; arguments: {', '.join(allowed)}"
        )
    full = {**allowed, **args}
    # specs are stored as JSON and YAML, where a tuple comes back as a list: keep them lists from the start
    return {"model": spec["model"], **{k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build the float architecture a spec describes."""
    full = normalize_spec(spec)
    fn = _lookup(full.pop("model"))
    try:
        return fn(**full)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {spec['model']!r} with {full}: {exc}") from None
