"""Per-layer bit sensitivity: what each layer costs in validation accuracy at each bit width, alone.

For every Conv2d/Linear and every candidate width b, the float model gets that one layer at b-bit weights and
b-bit inputs (the same Brevitas layers as QAT, step sizes calibrated on training images, no training) while
every other layer stays float, and is evaluated on the validation split the model was selected on. The drop
against the float model says how much that layer resists low bits before any training; beside it stands what
the layer is worth to the score (its share of non-zero parameters and of MACs). :func:`suggest_layer_bits`
turns both into QuantizeConfig's ``layer_bits``: the moves below a base width that save the most score per
point of validation accuracy, until a budget of summed drops is spent.

Single-layer drops before QAT rank layers; they do not add up exactly, and QAT recovers much of them. They
choose where to spend bits, and the QAT run that follows says what the choice cost.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimbench.artifact import build_from_artifact, load_artifact
from slimbench.compress.calibration import calibration_indices, dataset_for, validation_images
from slimbench.compress.qat import calibrate_activations, plan_bits
from slimbench.compress.quantize import QuantizeConfig, check_step_inits
from slimbench.data import ImageDataset
from slimbench.errors import CompressionError
from slimbench.measure import count_model
from slimbench.measure.accuracy import evaluate
from slimbench.models.lowbit import apply_lowbit
from slimbench.sparsity.config import GradualPruningConfig
from slimbench.sparsity.unstructured import prune_where_ramp_ends

BITS = (2, 3, 4, 8)


@dataclass
class LayerSensitivity:
    name: str
    nonzero_params: int
    macs: int
    drops: dict[int, float]  # bits -> validation accuracy lost against the float model (a fraction)


@dataclass
class SensitivityReport:
    checkpoint: str
    reference_acc: float  # the float model on the same validation images
    images: int
    calibration_images: int
    layers: list[LayerSensitivity] = field(default_factory=list)
    weight_step_init: str = "max"  # as QuantizeConfig's: the trials start their weight steps as QAT would
    activation_step_init: str = "percentile"  # and their input steps
    params_counted_at: dict[str, Any] | None = None  # the pruning ramp whose end the parameters are counted at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bit_sensitivity(checkpoint: str | Path, bits: Sequence[int] = BITS, images: int = 2000,
                    calibration_size: int = 256, dataset: ImageDataset | None = None, seed: int = 0,
                    on_step: Callable[[str, int], None] | None = None,
                    weight_step_init: str = "max", activation_step_init: str = "percentile",
                    count_params_at: GradualPruningConfig | None = None) -> SensitivityReport:
    """Validation accuracy lost by each Conv2d/Linear of a float artifact quantized alone at each of ``bits``
    (weights and inputs), on the first ``images`` validation images; ``on_step(layer, bits)`` after each.
    ``weight_step_init`` ("max" or "mse") and ``activation_step_init`` ("percentile" or "mse"): as the QAT run the
    suggestion is for will start its weight and input steps. ``count_params_at``: the QAT run's gradual pruning
    ramp; each layer's non-zero parameters are then counted where it ends (on a copy pruned with the trainer's
    selection and ranking), since a global threshold leaves the layers unequally sparse and the score saved by a
    layer's bits is its share of the weights then stored. The drops are still measured on the model as it is."""
    check_step_inits(weight_step_init, activation_step_init)
    if not bits or any(not 2 <= b <= 8 for b in bits):
        raise CompressionError(f"bit widths must lie in 2..8, got {list(bits)}")
    artifact = load_artifact(checkpoint)
    if artifact.quant:
        raise CompressionError(f"{checkpoint} is already quantized ({artifact.quant.get('mode')}): measure the "
                               "sensitivity of its float parent")
    data = dataset_for(artifact, dataset)
    held_out = validation_images(data, artifact)
    if held_out is None:
        raise CompressionError(f"{checkpoint} trained without a validation split: sensitivity is measured on "
                               "validation images only, never on the test set")
    val_x, val_y = held_out[0][:images], held_out[1][:images]
    calibration = data.train_x[calibration_indices(data, artifact, calibration_size, seed)]
    model = build_from_artifact(artifact, checkpoint).eval()
    num_classes = data.num_classes
    reference = evaluate(model, val_x, val_y, num_classes, channels_last=False).accuracy
    counted = model
    if count_params_at is not None:
        counted = copy.deepcopy(model)
        prune_where_ramp_ends(counted, count_params_at)
    counts = {layer.name: layer for layer in count_model(counted, tuple(data.train_x.shape[1:])).layers}
    report = SensitivityReport(checkpoint=str(checkpoint), reference_acc=reference, images=len(val_x),
                               calibration_images=len(calibration), weight_step_init=weight_step_init,
                               activation_step_init=activation_step_init,
                               params_counted_at=None if count_params_at is None
                               else count_params_at.model_dump(include={"final_sparsity", "scope", "method",
                                                                        "exclude"}))
    # layer order and input signedness do not depend on the width: one forward pass finds them for every trial
    plan = plan_bits(model, QuantizeConfig(mode="qat", first_last_bits=None), calibration[:64])
    for name in plan:
        drops = {}
        for b in bits:
            recipe = {**plan[name], "weight_bits": b, "activation_bits": b}
            trial = apply_lowbit(copy.deepcopy(model), {name: recipe}, str(checkpoint))
            torch.manual_seed(seed)
            calibrate_activations(trial, calibration, weight_step_init=weight_step_init,
                                  activation_step_init=activation_step_init)
            drops[b] = reference - evaluate(trial, val_x, val_y, num_classes, channels_last=False).accuracy
            if on_step:
                on_step(name, b)
        layer = counts.get(name)
        report.layers.append(LayerSensitivity(name=name, nonzero_params=layer.nonzero_params if layer else 0,
                                              macs=layer.macs if layer else 0, drops=drops))
    return report


def score_saved(layer: LayerSensitivity, bits: int, base_bits: int, norms: tuple[float, float]) -> float:
    """What moving one layer from ``base_bits`` to ``bits`` (weights and inputs) takes off a score whose
    normalisers are ``norms`` (parameters, MACs: a score rule's ``param_norm`` and ``op_norm``)."""
    param_norm, op_norm = norms
    return (base_bits - bits) / 32 * (layer.nonzero_params / param_norm + layer.macs / op_norm)


def suggest_layer_bits(report: SensitivityReport, norms: tuple[float, float], base_bits: int = 4,
                       budget: float | None = 0.005, target_saving: float | None = None,
                       keep: Sequence[str] = (), protect: float | None = None,
                       protect_bits: int = 8) -> dict[str, dict[str, int]]:
    """Per-layer bits away from ``base_bits``, as QuantizeConfig's ``layer_bits``. Layers that lose at least
    ``protect`` (a fraction of validation accuracy) at ``base_bits`` go up to ``protect_bits``. Then, among
    the others, greedily the moves below ``base_bits`` with the most score saved per unit of added drop, at
    most one per layer, while the summed added drops stay within ``budget`` (None: no limit) and until
    ``target_saving`` is taken off the score (None: as much as the budget allows; both None: no move down).
    ``keep`` names layers left alone (first and last, which ``first_last_bits`` governs)."""
    if budget is None and target_saving is None and protect is None:
        raise CompressionError("give a budget of validation accuracy, a score saving to reach, a drop to protect "
                               "layers from, or several")
    chosen: dict[str, dict[str, int]] = {}
    for layer in report.layers:
        if protect is not None and layer.name not in keep and layer.drops.get(base_bits, 0.0) >= protect:
            chosen[layer.name] = {"weight_bits": protect_bits, "activation_bits": protect_bits}
    if budget is None and target_saving is None:
        return dict(sorted(chosen.items()))
    spent = saved_total = 0.0
    moves = []
    for layer in report.layers:
        if layer.name in keep or layer.name in chosen or base_bits not in layer.drops:
            continue
        for bits, drop in layer.drops.items():
            if bits < base_bits:
                added = max(drop - layer.drops[base_bits], 0.0)
                saved = score_saved(layer, bits, base_bits, norms)
                moves.append((saved / max(added, 1e-4), saved, added, bits, layer.name))
    for _, saved, added, bits, name in sorted(moves, reverse=True):
        if target_saving is not None and saved_total >= target_saving:
            break
        if name in chosen or (budget is not None and spent + added > budget):
            continue
        chosen[name] = {"weight_bits": bits, "activation_bits": bits}
        spent += added
        saved_total += saved
    return dict(sorted(chosen.items()))


def suggest_for_target_score(report: SensitivityReport, score_of: Callable[[dict[str, dict[str, int]]], float],
                             target_score: float, norms: tuple[float, float], base_bits: int = 4,
                             budget: float | None = None, keep: Sequence[str] = (), protect: float | None = None,
                             protect_bits: int = 8) -> dict[str, dict[str, int]]:
    """:func:`suggest_layer_bits` asked for the saving that brings ``score_of(layer_bits)`` (the exact score of a
    QAT plan at ``base_bits``, e.g. from `slimbench.score.plan_scorer`) from no move down to ``target_score``. The
    greedy weighs each move by a per-layer estimate, and the exact score of its plan can stay a little above the
    target (batch norm and the dense first layer share qw), so the shortfall is asked for again, a few times,
    until the plan meets the target or no further move fits ``budget``."""
    def suggest(saving: float) -> dict[str, dict[str, int]]:
        return suggest_layer_bits(report, norms, base_bits=base_bits, budget=budget, target_saving=saving,
                                  keep=keep, protect=protect, protect_bits=protect_bits)

    saving = max(score_of({}) - target_score, 0.0)
    chosen = suggest(saving)
    for _ in range(5):
        shortfall = score_of(chosen) - target_score
        if shortfall <= 0:
            break
        wider = suggest(saving + shortfall)
        if wider == chosen:
            break
        saving, chosen = saving + shortfall, wider
    return chosen


def suggestion_effect(report: SensitivityReport, chosen: dict[str, dict[str, int]], base_bits: int,
                      norms: tuple[float, float]) -> dict[str, Any]:
    """What a suggestion does against every layer at ``base_bits``: the layers it moves up and down, the score it
    takes off (negative when the layers moved up cost more than the others save), and the validation accuracy
    its moves down cost, summed over single-layer trials."""
    bits_of = {name: bits["weight_bits"] for name, bits in chosen.items()}
    moved = [layer for layer in report.layers if bits_of.get(layer.name, base_bits) != base_bits]
    down = [layer for layer in moved if bits_of[layer.name] < base_bits]
    return {"up": [layer.name for layer in moved if bits_of[layer.name] > base_bits],
            "down": [layer.name for layer in down],
            "score_saved": sum(score_saved(layer, bits_of[layer.name], base_bits, norms) for layer in moved),
            "drop_spent": sum(layer.drops[bits_of[layer.name]] - layer.drops[base_bits] for layer in down)}


def plot_sensitivity(report: SensitivityReport, path: str | Path) -> Path:
    """One bar group per layer (validation points lost at each width), the layer's share of MACs beneath."""
    import matplotlib.pyplot as plt

    from slimbench.plotting import save_figure

    layers = report.layers
    widths = sorted({b for layer in layers for b in layer.drops})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.42 * len(layers) + 2), 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    step = 0.8 / len(widths)
    positions = range(len(layers))
    for k, bits in enumerate(widths):
        top.bar([i - 0.4 + (k + 0.5) * step for i in positions], [100 * layer.drops.get(bits, 0.0) for layer in layers],
                width=step, label=f"w{bits}a{bits}")
    top.axhline(0, color="black", linewidth=0.6)
    # 2-bit drops reach tens of points where 4-bit ones are tenths: linear below one point, logarithmic above
    top.set_yscale("symlog", linthresh=1.0)
    top.set_ylabel("validation points lost (symlog)")
    lowest = min((100 * d for layer in layers for d in layer.drops.values()), default=0.0)
    top.set_ylim(bottom=min(-0.5, 1.2 * lowest))
    top.set_title(f"{Path(report.checkpoint).parent.name or report.checkpoint}: one layer quantized at a time "
                  f"(float {100 * report.reference_acc:.2f}%, {report.images:,} validation images)", fontsize=9)
    top.legend(fontsize=7, ncol=len(widths))
    top.grid(True, axis="y", alpha=0.3)
    total_macs = sum(layer.macs for layer in layers) or 1
    bottom.bar(list(positions), [100 * layer.macs / total_macs for layer in layers], color="tab:gray")
    bottom.set_ylabel("% of MACs")
    bottom.set_xticks(list(positions), [layer.name for layer in layers], rotation=70, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
