"""Pruning configuration: every field is a YAML key, a ``--set key=value`` override and a CLI option."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from slimbench.config import StrictModel
from slimbench.errors import CompressionError
from slimbench.sparsity.criteria import criterion


class PruneConfig(StrictModel):
    name: str | None = None
    kind: Literal["structured", "unstructured"] = "structured"
    method: str = "l1"  # a criterion of slimbench.sparsity.criteria: l1, l2, bn_scale, taylor, random, or one registered
    # structured: the fraction of the *original* parameters (or MACs, or channels) to remove in total;
    # unstructured: the fraction of the selected weights set to zero.
    ratio: float = Field(0.3, gt=0, lt=1)
    # what `ratio` measures (structured only); "score": parameters / score_norms[0] + MACs / score_norms[1], the
    # fp32 score of the brief's rule, so that channels are removed where they cost the score most
    target: Literal["params", "macs", "channels", "score"] = "params"
    score_norms: tuple[float, float] = Field((5.6e6, 8.3e8))  # the brief's dividers of parameters and MACs
    scope: Literal["global", "layer"] = "layer"  # one ranking across layers, or the same ratio in each layer
    layers: list[Literal["conv", "linear"]] = ["conv", "linear"]  # layer types that may be pruned
    include: list[str] = []  # fnmatch patterns of module names to prune (empty: all of `layers`)
    exclude: list[str] = []  # fnmatch patterns of module names to protect
    protect_classifier: bool = True  # the last Linear layer keeps its outputs (and, unstructured, its weights)
    max_layer_ratio: float = Field(0.9, gt=0, le=1)  # no layer loses more than this share of its channels
    # keep channel counts multiples of this: a number, or the SIMD blocking of a CPU class: `auto` (the machine that
    # prunes; see slimbench.hardware), `avx2` (8), `avx512` (16), `arm-neon` (8)
    round_to: int | Literal["auto", "avx2", "avx512", "arm-neon"] | None = None
    # measure the pruned model against its parent (ONNX Runtime fp32, batch 64, this machine) and fail the stage
    # when it is not faster: pruning that only looks lighter on paper is refused
    require_faster: bool = False
    schedule: Literal["oneshot", "iterative"] = "oneshot"
    steps: int = Field(1, gt=0)  # iterative: prune in this many steps, fine-tuning after each
    ramp: Literal["linear", "cubic"] = "linear"  # iterative: how the ratio grows over the steps
    calibration_batches: int = Field(8, gt=0)  # taylor: training batches whose gradients rank channels
    calibration_batch_size: int = Field(64, gt=0)
    seed: int = 0
    # Fine-tuning after each pruning step: keys of the training config (epochs, optimizer, schedule, ...)
    # laid over the parent's own training config; None skips fine-tuning.
    finetune: dict[str, Any] | None = None
    distill_from_parent: bool = False  # fine-tune with the unpruned model as teacher

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        try:
            criterion(self.method, self.kind)
        except CompressionError as exc:
            raise ValueError(str(exc)) from None
        if self.schedule == "oneshot" and self.steps != 1:
            raise ValueError("steps > 1 needs schedule: iterative")
        if isinstance(self.round_to, int) and self.round_to < 1:
            raise ValueError("round_to must be a positive channel multiple")
        if self.require_faster and self.kind != "structured":
            raise ValueError("require_faster needs kind: structured (zeros do not speed up dense kernels)")
        if self.distill_from_parent and self.finetune is None:
            raise ValueError("distill_from_parent needs finetune settings")
        return self


def ramp_ratios(final: float, steps: int, ramp: str) -> list[float]:
    """Cumulative ratio after each of ``steps`` steps; cubic front-loads pruning (Zhu and Gupta 2017)."""
    if ramp == "linear":
        return [final * (k / steps) for k in range(1, steps + 1)]
    return [final * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)]


class GradualPruningConfig(StrictModel):
    """Unstructured sparsity that grows while a model trains (Zhu and Gupta 2017), the training config's
    ``gradual_pruning`` section. Sparsity is raised at the start of each epoch from ``start_epoch`` to
    ``end_epoch`` and held after; model selection only considers epochs at the final sparsity."""

    final_sparsity: float = Field(gt=0, lt=1)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    start_epoch: int = Field(0, ge=0)
    end_epoch: int | None = Field(None, gt=0)  # default: three quarters of the epochs
    ramp: Literal["linear", "cubic"] = "cubic"
    method: str = "l1"  # an unstructured criterion of slimbench.sparsity.criteria
    scope: Literal["global", "layer"] = "global"
    layers: list[Literal["conv", "linear"]] = ["conv", "linear"]
    include: list[str] = []
    exclude: list[str] = []
    protect_classifier: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _known_method(self) -> GradualPruningConfig:
        try:
            criterion(self.method, "unstructured")
        except CompressionError as exc:
            raise ValueError(str(exc)) from None
        return self

    def end(self, epochs: int) -> int:
        return self.end_epoch if self.end_epoch is not None else max(self.start_epoch + 1, round(0.75 * epochs))

    def sparsity_at(self, epoch: int, epochs: int) -> float:
        """Target sparsity during ``epoch`` (0-based)."""
        end = self.end(epochs)
        if epoch < self.start_epoch:
            return 0.0
        progress = min(1.0, (epoch - self.start_epoch + 1) / max(end - self.start_epoch, 1))
        shape = progress if self.ramp == "linear" else 1 - (1 - progress) ** 3
        return self.initial_sparsity + (self.final_sparsity - self.initial_sparsity) * shape

    def as_prune_config(self, ratio: float) -> PruneConfig:
        return PruneConfig(kind="unstructured", method=self.method, ratio=ratio, scope=self.scope, layers=self.layers,
                           include=self.include, exclude=self.exclude, protect_classifier=self.protect_classifier,
                           seed=self.seed)
