"""The score a QAT plan will get, before any training: what `slimbench score` will read from the artifact that
the QAT run of a float model stores (mixed bits, first and last layer, qw over the weights as stored, weights
counted where a pruning ramp ends). Used to aim `sensitivity --target-score` and by the bit-plans benchmark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from slimbench.artifact import build_from_artifact, load_artifact
from slimbench.compress.calibration import calibration_indices, dataset_for
from slimbench.compress.qat import effective_bits, plan_bits
from slimbench.compress.quantize import QuantizeConfig
from slimbench.data import ImageDataset
from slimbench.errors import CompressionError
from slimbench.measure import count_model
from slimbench.measure.counts import scored_nonzero, scored_weight_bits
from slimbench.models import weight_parameters
from slimbench.score.formula import ScoreInputs, ScoreRule, compute_score
from slimbench.sparsity.config import GradualPruningConfig
from slimbench.sparsity.unstructured import prune_where_ramp_ends


def plan_score(model: torch.nn.Module, lineage: list[dict[str, Any]], config: QuantizeConfig, rule: ScoreRule,
               images: torch.Tensor) -> float:
    """The score a float model would get from the QAT run of ``config`` (its bits, layer_bits and
    first_last_bits), as `slimbench score` would read it from the artifact: w the non-zero weights, qw averaged
    over the weights as stored, op bits MAC-weighted. ``images``: a few inputs, to find each layer's input
    signedness. A model pruned where its QAT ramp ends gives the score that run will store."""
    return score_of_plan(model, lineage, plan_bits(model, config, images[:64]), rule, tuple(images.shape[1:]))


def score_of_plan(model: torch.nn.Module, lineage: list[dict[str, Any]], plan: dict[str, dict[str, Any]],
                  rule: ScoreRule, input_shape: tuple[int, ...] = (3, 32, 32)) -> float:
    """:func:`plan_score` for a plan already made by `compress.qat.plan_bits` (a caller that quantizes with the
    same plan makes it once)."""
    if rule.op_counting != "macs":
        raise CompressionError(f"a bit plan's score is computed for rules that count f as MACs; {rule.name!r} "
                               f"counts {rule.op_counting}")
    counts = count_model(model, input_shape)
    bits = effective_bits(model, plan, input_shape, counts)
    # a float model's zeros are the weights pruning removed: qw averages over the others, as `score` does
    kept = {name: p != 0 for name, p in weight_parameters(model) if bool((p == 0).any())}
    qw = scored_weight_bits(model, {"mode": "qat", "layers": plan}, lineage, kept)
    inputs = ScoreInputs(w=scored_nonzero(model, {}, lineage), f=counts.macs, qw=qw,
                         qa=bits["activation_bits"], op_bits=bits["op_bits"])
    return compute_score(inputs, rule).total


def plan_scorer(checkpoint: str | Path, count_params_at: GradualPruningConfig | None = None,
                dataset: ImageDataset | None = None, first_last_bits: int | None = 8,
                ) -> Callable[[dict[str, dict[str, int]], int, ScoreRule], float]:
    """``score(layer_bits, base_bits, rule)`` for a float artifact's QAT plans (:func:`plan_score`), counted
    where ``count_params_at``'s ramp ends when given: what `sensitivity --target-score` aims the suggestion at."""
    artifact = load_artifact(checkpoint)
    data = dataset_for(artifact, dataset)
    images = data.train_x[calibration_indices(data, artifact, 64, 0)]
    model = build_from_artifact(artifact, checkpoint)
    if count_params_at is not None:
        prune_where_ramp_ends(model, count_params_at)
    model.eval()

    def score(layer_bits: dict[str, dict[str, int]], base_bits: int, rule: ScoreRule) -> float:
        config = QuantizeConfig(mode="qat", weight_bits=base_bits, activation_bits=base_bits,
                                first_last_bits=first_last_bits, layer_bits=layer_bits)
        return plan_score(model, artifact.lineage, config, rule, images)

    return score
