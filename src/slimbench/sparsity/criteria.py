"""Pruning criteria as small plug-ins (as Torch-Pruning's ``Importance`` classes): a name, and a factory for
the structured ranking (a Torch-Pruning importance) and/or the unstructured one (a score per weight). Configs
validate ``method`` against this registry; :func:`register_criterion` adds one. A structured importance with a
``bind(model, example, score_norms)`` method is bound to the model before it ranks (``taylor_per_score`` needs
each layer's output size)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimbench.errors import CompressionError


@dataclass(frozen=True)
class Criterion:
    name: str
    structured: Callable[[], object] | None = None  # -> a torch_pruning.importance.Importance
    # (weight, generator) -> a non-negative score per weight; lower goes first. Weights already zero must rank lowest.
    unstructured: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    needs_gradients: bool = False  # structured: ranks with the loss's gradients on calibration batches
    # structured: the importance prices channels in the model it prunes, told before ranking through its
    # ``bind(model, example_input, score_norms)``
    needs_model: bool = False


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


def _lamp_scores(weight: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
    """LAMP (Lee et al., ICLR 2021): a weight's square over the sum of the squares of its layer's weights not
    smaller than it. Scores lie in (0, 1] in every layer and each layer's largest weight scores 1, so one global
    threshold compares layers whose magnitudes differ (ResNet-20's deeper layers carry smaller weights, and plain
    global magnitude strips them first); zeros score 0 and stay first."""
    squares = weight.detach().float().flatten().pow(2)
    order = torch.argsort(squares)
    ascending = squares[order]
    not_smaller = ascending.flip(0).cumsum(0).flip(0)
    scores = torch.zeros_like(squares)
    scores[order] = ascending / not_smaller.clamp_min(torch.finfo(torch.float32).tiny)
    return scores.view_as(weight)


class ScoreCostImportance:
    """A channel's importance (a Torch-Pruning importance) per unit of score that the channel costs.

    Removing one channel of a group removes, in every layer of the group, the weights that make or read it:
    ``p`` parameters and ``p x H x W`` MACs (H x W: that layer's output positions). With the score's dividers
    (parameters over 5.6e6, MACs over 8.3e8 in the brief) a channel at 32 x 32 costs the score about 8 times
    what its parameters alone would, and one at 8 x 8 about 1.4 times; a ranking by importance alone does not
    see this (on ResNet-20, global L1 happens to strip the 32 x 32 layers anyway: section 35). Dividing each
    group's importances by its channel cost ranks channels by what they are worth per unit of score (HALP, Shen
    et al. 2022, does this with latency).
    The importance must be comparable across groups for this to mean anything: a first-order estimate of the
    loss change, summed over the group's layers, is (``taylor_per_score``). Mean-normalised magnitudes are not
    (they give each group the same total, however many layers its channels feed): divided by cost, they strip
    the residual streams first, which BENCHMARKS section 35 measured at 41% validation accuracy where plain
    ``l1`` kept 75% at the same score.
    """

    def __init__(self, importance: object) -> None:
        self._importance = importance
        self._positions: dict[int, int] = {}
        self._norms: tuple[float, float] | None = None

    def bind(self, model: nn.Module, example: torch.Tensor, score_norms: tuple[float, float]) -> None:
        """Record each layer's output positions with one forward pass of ``example``."""
        def record(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self._positions[id(module)] = output[0, 0].numel() if output.dim() > 2 else 1

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        try:
            with torch.no_grad():
                model.eval()(example)
        finally:
            for hook in hooks:
                hook.remove()
        self._norms = score_norms

    def channel_cost(self, group: Any) -> float:
        """The score one channel of ``group`` costs: its weights in every layer of the group, and their MACs."""
        if self._norms is None:
            raise CompressionError("a score-cost importance needs each layer's output size: bind it to the model first")
        tp = _tp()
        out_channel_fns = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)  # as Torch-Pruning's own importances tell
        seen, params, macs = set(), 0.0, 0.0
        root_indices = max(len(group[0][1]), 1)
        for dep, indices in group:
            layer = dep.layer
            if not isinstance(layer, nn.Conv2d | nn.Linear):
                continue
            outgoing = dep.pruning_fn in out_channel_fns
            if (id(layer), outgoing) in seen:
                continue
            seen.add((id(layer), outgoing))
            channels = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
            if not outgoing:
                channels = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
            # a channel may reach a layer as several inputs (a flattened feature map feeds a classifier)
            weights = layer.weight.numel() / channels * len(indices) / root_indices
            params += weights
            macs += weights * self._positions.get(id(layer), 1)
        return params / self._norms[0] + macs / self._norms[1]

    def __call__(self, group: Any) -> torch.Tensor | None:
        importance = self._importance(group)  # type: ignore[operator]
        if importance is None:
            return None
        cost = self.channel_cost(group)
        return importance / cost if cost > 0 else importance


register_criterion(Criterion("l1", lambda: _tp().importance.GroupMagnitudeImportance(p=1),
                             lambda weight, _: weight.detach().abs()))
register_criterion(Criterion("lamp", unstructured=_lamp_scores))
register_criterion(Criterion("l2", lambda: _tp().importance.GroupMagnitudeImportance(p=2)))
register_criterion(Criterion("bn_scale", lambda: _tp().importance.BNScaleImportance()))
register_criterion(Criterion("taylor", lambda: _tp().importance.GroupTaylorImportance(), needs_gradients=True))
register_criterion(Criterion("taylor_per_score", lambda: ScoreCostImportance(
    _tp().importance.GroupTaylorImportance(group_reduction="sum", normalizer=None)), needs_gradients=True,
    needs_model=True))
register_criterion(Criterion("random", lambda: _tp().importance.RandomImportance(), _random_scores))
