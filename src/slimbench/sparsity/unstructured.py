"""Unstructured (weight-level) pruning with ``torch.nn.utils.prune``, made permanent before saving.

Weights that are already zero rank lowest, so pruning to a higher ratio keeps earlier zeros and adds to
them: iterative and gradual schedules only ever grow the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from slimbench.sparsity.config import GradualPruningConfig, PruneConfig
from slimbench.sparsity.criteria import criterion
from slimbench.sparsity.select import select_layers


@dataclass
class SparsityReport:
    per_layer: dict[str, float]  # zero fraction of each pruned weight tensor
    pruned_weights: int  # weights in the selected tensors
    zero_weights: int  # of which zero

    @property
    def sparsity(self) -> float:
        return self.zero_weights / max(self.pruned_weights, 1)


def _scores(weight: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    score = criterion(method, "unstructured").unstructured  # never a silent fallback to random ranking
    assert score is not None
    return score(weight, generator)


@torch.no_grad()
def compute_masks(layers: dict[str, nn.Module], config: PruneConfig, ratio: float | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks that zero ``ratio`` of the selected weights, ranked by ``torch.nn.utils.prune``'s L1 rule."""
    ratio = config.ratio if ratio is None else ratio
    generator = torch.Generator().manual_seed(config.seed)
    # contiguous: torch's L1 rule views each score flat, which a channels_last weight (eager training) cannot give
    scores = {name: _scores(module.weight, config.method, generator).contiguous() for name, module in layers.items()}
    if config.scope == "global":
        flat = torch.cat([score.flatten() for score in scores.values()])
        keep = prune.L1Unstructured(amount=ratio).compute_mask(flat, torch.ones_like(flat))
        masks, offset = {}, 0
        for name, score in scores.items():
            masks[name] = keep[offset:offset + score.numel()].view_as(score)
            offset += score.numel()
        return masks
    return {name: prune.L1Unstructured(amount=ratio).compute_mask(score, torch.ones_like(score))
            for name, score in scores.items()}


@torch.no_grad()
def prune_unstructured(layers: dict[str, nn.Module], config: PruneConfig, ratio: float | None = None) -> SparsityReport:
    """Zero ``ratio`` of the selected weights (globally or per layer) and make the zeros permanent."""
    masks = compute_masks(layers, config, ratio)
    for name, module in layers.items():
        prune.custom_from_mask(module, "weight", masks[name])
        prune.remove(module, "weight")
    return sparsity_of(layers)


def prune_where_ramp_ends(model: nn.Module, ramp: GradualPruningConfig) -> SparsityReport:
    """Zero, in place, the weights a gradual pruning ramp has zeroed at its end: its final sparsity, with the
    trainer's layer selection and ranking (what a run that prunes while it trains will store)."""
    config = ramp.as_prune_config(ramp.final_sparsity)
    return prune_unstructured(select_layers(model, config), config)


@torch.no_grad()
def apply_masks_in_place(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """The same zeros without re-creating parameters, so an optimiser holding them keeps working (gradual)."""
    for name, module in layers.items():
        module.weight.mul_(masks[name].to(module.weight.device, module.weight.dtype))


def sparsity_of(layers: dict[str, nn.Module]) -> SparsityReport:
    per_layer, total, zeros = {}, 0, 0
    for name, module in layers.items():
        weight = module.weight
        layer_zeros = int((weight == 0).sum())
        per_layer[name] = layer_zeros / weight.numel()
        total += weight.numel()
        zeros += layer_zeros
    return SparsityReport(per_layer=per_layer, pruned_weights=total, zero_weights=zeros)


def recorded_sparse_names(lineage: list[dict[str, Any]]) -> list[str]:
    """The parameters that the lineage's prune steps sparsified."""
    return sorted({name for step in lineage if step.get("stage") == "prune"
                   for name in (step.get("metrics") or {}).get("sparse_params", [])})


@torch.no_grad()
def pruning_masks(state: dict[str, torch.Tensor], lineage: list[dict[str, Any]],
                  recorded: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Keep-masks (True: kept) of every tensor pruning sparsified.

    An artifact records them since pruning steps save their masks; for one written before, the zeros of the
    tensors its lineage names are the masks. That reading is exact for a float model only: on a low-bit
    model it would take the weights its grid rounds to zero for pruned ones.
    """
    masks = {name: mask.to(torch.bool) for name, mask in (recorded or {}).items()}
    for name in recorded_sparse_names(lineage):
        if name not in masks and name in state:
            masks[name] = state[name].detach().cpu() != 0
    return masks


@torch.no_grad()
def masks_after_pruning(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                        names: list[str], parent_masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The parent's masks plus what one unstructured step removed: the weights it turned from non-zero to zero.

    A weight that was zero before the step keeps its parent mask: on a low-bit model that is a grid level
    (kept) unless an earlier step pruned it.
    """
    masks = dict(parent_masks)
    for name in names:
        was, now = before[name].detach().cpu(), after[name].detach().cpu()
        base = masks.get(name, torch.ones_like(was, dtype=torch.bool))
        masks[name] = base & ((now != 0) | (was == 0))
    return masks


class MaskKeeper:
    """Holds pruned weights at zero while a sparse model trains (re-applied after every optimiser step)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        missing = [name for name in masks if name not in params]
        if missing:
            raise ValueError(f"sparse parameters not in the model: {', '.join(missing[:3])}")
        self.masks = {name: mask.to(params[name].device).view_as(params[name]) for name, mask in masks.items()}
        self.pairs = [(params[name], mask) for name, mask in self.masks.items()]
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self.pairs:
            param.mul_(mask)
