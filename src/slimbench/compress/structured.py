"""Structured pruning: channels physically removed with Torch-Pruning's dependency graph.

Torch-Pruning groups every layer coupled to a channel (through residual additions, concatenations and
depthwise convolutions) so that removing a channel keeps the network consistent. slimbench adds three things
on top: the layer selection of :mod:`slimbench.sparsity.select`, modules that declare themselves channel
barriers (e.g. ResNet option-A shortcuts, whose zero-padding fixes a channel mapping), and a search that
turns "remove 30 % of the parameters (or MACs)" into Torch-Pruning's per-layer channel ratio.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from slimbench.errors import CompressionError
from slimbench.hardware import channel_multiple
from slimbench.measure import count_model
from slimbench.sparsity.config import PruneConfig
from slimbench.sparsity.criteria import criterion
from slimbench.sparsity.select import select_layers

Calibrate = Callable[[nn.Module], None]


class _BarrierPruner(tp.pruner.function.BasePruningFunc):
    """Makes a barrier module a node of the graph (not an element-wise pass-through) that is never pruned."""

    def prune_out_channels(self, layer: nn.Module, idxs):  # type: ignore[no-untyped-def]
        raise CompressionError(f"{type(layer).__name__} cannot lose channels")

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.out_channels)

    def get_in_channels(self, layer: nn.Module) -> int:
        return int(layer.in_channels)


def _importance(config: PruneConfig, model: nn.Module, example: torch.Tensor) -> tp.importance.Importance:
    """The config's ranking, bound to the model it prunes when its criterion prices channels there."""
    found = criterion(config.method, "structured")
    assert found.structured is not None
    importance = found.structured()
    if found.needs_model:
        importance.bind(model, example, config.score_norms)  # type: ignore[attr-defined]
    return importance  # type: ignore[return-value]


def resolve_round_to(round_to: int | str | None) -> int | None:
    """The channel multiple a config's ``round_to`` asks for: a number as is, a CPU class through its SIMD blocking."""
    if round_to is None or isinstance(round_to, int):
        return round_to
    return channel_multiple(round_to)


def _barrier_pruners(model: nn.Module) -> dict[type, tp.pruner.function.BasePruningFunc]:
    return {type(m): _BarrierPruner() for m in model.modules() if getattr(m, "channel_barrier", False)}


def _protected_layers(model: nn.Module, config: PruneConfig, example: torch.Tensor) -> list[nn.Module]:
    """Layers whose output channels stay: unselected ones, and every group that reaches a barrier."""
    selected = set(map(id, select_layers(model, config).values()))
    protected = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear) and id(m) not in selected]
    barriers = _barrier_pruners(model)
    if barriers:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, customized_pruners=barriers)
        for group in graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Conv1d, nn.Linear]):
            if any(type(dep.target.module) in barriers for dep, _ in group):
                # protect the layers whose outputs make these channels; their consumers stay prunable
                protected.extend(dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler))
    return protected


def _channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv1d))


def measure_target(model: nn.Module, config: PruneConfig, input_shape: tuple[int, ...]) -> float:
    """What a structured ``ratio`` counts, on ``model``: channels, parameters, MACs or the fp32 score."""
    if config.target == "channels":
        return _channels(model)
    counts = count_model(model, input_shape)
    if config.target == "score":
        return counts.params / config.score_norms[0] + counts.macs / config.score_norms[1]
    return counts.params if config.target == "params" else counts.macs


class _KeepFloor:
    """Each group keeps its strongest channels, at least ``keep`` of them (rounded up to ``round_to``).

    Torch-Pruning's global ranking marks every channel under one threshold, then skips a group whose channels
    are all marked (a layer may not lose them all), so that group loses none: a higher ratio could then prune
    less, which breaks the search's bisection. Ranking a group's strongest channels above every threshold
    prunes such a group down to its floor instead.
    """

    def __init__(self, importance: Callable[[object], torch.Tensor | None], keep: float, round_to: int | None):
        self.importance, self.keep, self.round_to = importance, keep, round_to

    def __call__(self, group: object) -> torch.Tensor | None:
        scores = self.importance(group)
        if scores is None or scores.numel() == 0:
            return scores
        keep = max(1, math.ceil(self.keep * scores.numel()))
        if self.round_to:
            keep = math.ceil(keep / self.round_to) * self.round_to
        scores = scores.clone()
        scores[scores.topk(min(keep, scores.numel())).indices] = float("inf")
        return scores


@dataclass
class StructuredResult:
    model: nn.Module
    channel_ratio: float  # the per-layer (or global) channel ratio Torch-Pruning was given
    achieved: float  # the fraction of the reference measure removed, as pruned


def _prune_once(model: nn.Module, config: PruneConfig, channel_ratio: float, example: torch.Tensor,
                grads: dict[str, torch.Tensor] | None) -> nn.Module:
    model = copy.deepcopy(model)
    barriers = _barrier_pruners(model)
    ignored = _protected_layers(model, config, example)
    importance = _importance(config, model, example)
    if config.scope == "global":
        importance = _KeepFloor(importance, 1 - config.max_layer_ratio, resolve_round_to(config.round_to))
    pruner = tp.pruner.BasePruner(
        model, example, importance=importance, pruning_ratio=channel_ratio,
        global_pruning=config.scope == "global", max_pruning_ratio=config.max_layer_ratio,
        ignored_layers=ignored, round_to=resolve_round_to(config.round_to), customized_pruners=barriers or None,
        root_module_types=[nn.Conv2d, nn.Conv1d, nn.Linear],
    )
    if grads is not None:
        for name, param in model.named_parameters():
            param.grad = grads.get(name)
    torch.manual_seed(config.seed)  # random importance
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def prune_structured(
    model: nn.Module,
    config: PruneConfig,
    removed_fraction: float,
    reference: float,
    input_shape: tuple[int, ...] = (3, 32, 32),
    calibrate: Calibrate | None = None,
) -> StructuredResult:
    """Prune until ``removed_fraction`` of ``reference`` (params, MACs, channels or fp32 score of the original
    model, :func:`measure_target`) is gone.

    ``model`` is left untouched; the pruned copy comes back. Channel counts are whole numbers, so the
    fraction reached is the closest one from below or above (reported as ``achieved``).
    """
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    goal = (1 - removed_fraction) * reference
    current = measure_target(model, config, input_shape)
    if current <= goal:
        return StructuredResult(copy.deepcopy(model), 0.0, 1 - current / reference)

    grads = None
    if criterion(config.method, "structured").needs_gradients:  # once, on the unpruned model; every trial uses them
        if calibrate is None:
            raise CompressionError(f"{config.method} importance needs calibration data (gradients of the loss)")
        model.zero_grad(set_to_none=True)
        calibrate(model)
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)

    def trial(ratio: float) -> tuple[nn.Module, float]:
        pruned = _prune_once(model, config, ratio, example, grads)
        return pruned, measure_target(pruned, config, input_shape)

    if config.target == "channels" and config.scope == "layer":
        ratio = 1 - goal / current
        pruned, value = trial(ratio)
    else:  # bisection on the channel ratio: the measure falls monotonically as it grows
        low, high = 0.0, config.max_layer_ratio
        best: tuple[float, nn.Module, float] | None = None
        for _ in range(10):
            ratio = (low + high) / 2
            pruned, value = trial(ratio)
            if best is None or abs(value - goal) < abs(best[2] - goal):
                best = (ratio, pruned, value)
            if abs(value - goal) <= 0.004 * reference:
                break
            # nothing removed at a ratio above zero: the ranking marked every prunable channel, and Torch-Pruning
            # skips groups that would lose them all; the ratio overshot
            if value > goal and value < current:
                low = ratio
            else:
                high = ratio
        assert best is not None
        ratio, pruned, value = best
    _check_forward(model, pruned, example)
    return StructuredResult(pruned, ratio, 1 - value / reference)


@torch.no_grad()
def _check_forward(original: nn.Module, pruned: nn.Module, example: torch.Tensor) -> None:
    try:
        out = pruned.eval()(example)
    except RuntimeError as exc:
        raise CompressionError(f"the pruned model no longer runs: {str(exc).splitlines()[0][:200]}") from None
    expected = original.eval()(example).shape
    if out.shape != expected:
        raise CompressionError(f"pruning changed the output shape from {list(expected)} to {list(out.shape)}")
