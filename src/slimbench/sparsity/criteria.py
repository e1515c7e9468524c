"""Pruning criteria as small plug-ins (as Torch-Pruning's ``Importance`` classes): a name, and a factory for
the structured ranking (a Torch-Pruning importance) and/or the unstructured one (a score per weight). Configs
validate ``method`` against this registry; :func:`register_criterion` adds one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from slimbench.errors import CompressionError


@dataclass(frozen=True)
class Criterion:
    name: str
    structured: Callable[[], object] | None = None  # -> a torch_pruning.importance.Importance
    # (weight, generator) -> a non-negative score per weight; lower goes first. Weights already zero must rank lowest.
    unstructured: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


CRITERIA: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    CRITERIA[criterion.name] = criterion
    return criterion


def criterion(name: str, kind: str) -> Criterion:
    """The named criterion for ``kind`` (structured/unstructured), or a clear error: never a silent fallback."""
    found = CRITERIA.get(name)
    if found is None or getattr(found, kind) is None:
        known = [c.name for c in CRITERIA.values() if getattr(c, kind) is not None]
        raise CompressionError(f"unknown {kind} pruning criterion {name!r}; choose one of {', '.join(known)}")
    return found


def _tp():  # type: ignore[no-untyped-def]
    import torch_pruning as tp

    return tp


def _random_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # a random rank for live weights, below all of them for weights already zero
    noise = torch.rand(weight.shape, generator=generator) + 1.0
    return torch.where(weight.detach() != 0, noise.to(weight.device), torch.zeros_like(weight))


register_criterion(Criterion("l1", lambda: _tp().importance.GroupMagnitudeImportance(p=1),
                             lambda weight, _: weight.detach().abs()))
register_criterion(Criterion("l2", lambda: _tp().importance.GroupMagnitudeImportance(p=2)))
register_criterion(Criterion("bn_scale", lambda: _tp().importance.BNScaleImportance()))
register_criterion(Criterion("taylor", lambda: _tp().importance.GroupTaylorImportance()))
register_criterion(Criterion("random", lambda: _tp().importance.RandomImportance(), _random_scores))
