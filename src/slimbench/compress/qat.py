"""Low-bit quantization-aware training (QAT) with Brevitas: w2..w8, a2..a8, per layer.

Pipeline (``slimbench quantize CHECKPOINT --mode qat``), every step on disk so an interruption resumes:

1. plan: a float forward pass on calibration images (training split) finds each Conv2d/Linear's execution
   order and whether its inputs can be negative; bits come from the defaults, ``first_last_bits`` for the
   first and last layer, then the ``layer_bits`` patterns; ``float_layers`` stay float.
2. ``qat/init.pt``: the model with Brevitas layers, activation step sizes calibrated on those images.
   The recipe is stored in the artifact's ``quant`` (as data), so every stage rebuilds the same model.
3. fine-tuning with the trainer from ``init.pt`` (any optimiser/schedule; optional distillation from the
   float parent), in ``qat/finetune/``.
4. ``model.pt``: weights snapped to their grid (each stored weight is one of the 2^b - 1 levels of its
   channel), checked to compute the same function as the trained model.

Effective bits of the recipe, with mixed precision: ``weight_bits`` is parameter-weighted over every
parameter of the dense model (float layers, biases and batch norm at 32 bits), ``activation_bits`` and
``op_bits`` (max(qw, qa) per layer) are MAC-weighted, float layers at 32. The score's qw is the same average
over the weights pruning kept (:func:`slimbench.measure.counts.scored_weight_bits`).
"""

from __future__ import annotations

import fnmatch
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimbench.artifact import (
    Artifact,
    atomic_write,
    build_from_artifact,
    code_version,
    config_hash,
    load_artifact,
    load_model,
    now_iso,
    save_artifact,
)
from slimbench.compress.calibration import calibration_indices, dataset_for, training_config
from slimbench.compress.finetune import finetune, same_stage_config
from slimbench.compress.quantize import QuantizeConfig, QuantizeResult, check_step_inits, quantize_step
from slimbench.config import dump_yaml, read_yaml, validate
from slimbench.data import ImageDataset, normalize
from slimbench.errors import CompressionError, ConfigError
from slimbench.measure import ModelCounts, count_model
from slimbench.models import build_model, weight_parameters
from slimbench.models.lowbit import apply_lowbit, is_lowbit, snap_weights
from slimbench.models.structure import apply_structure
from slimbench.runs import DB_NAME, ResultsStore
from slimbench.sparsity.unstructured import pruning_masks, recorded_sparse_names


@torch.no_grad()
def plan_bits(model: nn.Module, config: QuantizeConfig, images: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Bits and input signedness of every Conv2d/Linear to quantize, in execution order."""
    seen: dict[str, bool] = {}  # layer -> its inputs can be negative
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], name: str = name) -> None:
                seen[name] = seen.get(name, False) or bool((inputs[0] < 0).any())
            handles.append(module.register_forward_pre_hook(record))
    was_training = model.training
    try:
        model.eval()(normalize(images, channels_last=False))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    order = list(seen)
    if not order:
        raise CompressionError("the model has no Conv2d or Linear layer to quantize")
    plan = {}
    for name in order:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.float_layers):
            continue
        bits = {"weight_bits": config.weight_bits, "activation_bits": config.activation_bits}
        if config.first_last_bits is not None and name in (order[0], order[-1]):
            bits = {"weight_bits": config.first_last_bits, "activation_bits": config.first_last_bits}
        for pattern, override in config.layer_bits.items():
            if fnmatch.fnmatchcase(name, pattern):
                bits.update({k: v for k, v in override.model_dump().items() if v is not None})
        plan[name] = {**bits, "activation_signed": seen[name]}
    unmatched = [p for p in [*config.layer_bits, *config.float_layers]
                 if not any(fnmatch.fnmatchcase(name, p) for name in order)]
    if unmatched:
        raise ConfigError(f"layer pattern(s) {', '.join(map(repr, unmatched))} match no Conv2d/Linear layer "
                          f"(layers: {', '.join(order[:4])}, ...)")
    return plan


def effective_bits(model: nn.Module, plan: dict[str, dict[str, Any]],
                   input_shape: tuple[int, ...] = (3, 32, 32), counts: ModelCounts | None = None,
                   ) -> dict[str, float]:
    """Parameter-weighted weight bits, MAC-weighted activation bits and MAC-weighted max(qw, qa). ``counts``:
    the model's count at ``input_shape``, where the caller has it already."""
    counts = counts if counts is not None else count_model(model, input_shape)
    params = {name: p.numel() for name, p in weight_parameters(model)}
    total_params = sum(params.values())
    weight_bit_total = 0.0
    for name, numel in params.items():
        layer, _, kind = name.rpartition(".")
        bits = plan.get(layer, {}).get("weight_bits", 32) if kind == "weight" else 32
        weight_bit_total += numel * bits
    total_macs = sum(layer.macs for layer in counts.layers) or 1
    act = sum(layer.macs * plan.get(layer.name, {}).get("activation_bits", 32) for layer in counts.layers)
    ops = sum(layer.macs * max(plan.get(layer.name, {}).get("activation_bits", 32),
                               plan.get(layer.name, {}).get("weight_bits", 32)) for layer in counts.layers)
    return {"weight_bits": weight_bit_total / total_params, "activation_bits": act / total_macs,
            "op_bits": ops / total_macs}


@torch.no_grad()
def _least_error_steps(rows: torch.Tensor, peak: torch.Tensor, levels: int, low: int, high: int,
                       candidates: int) -> torch.Tensor:
    """Per row of ``rows``, the step among ``candidates`` fractions of that row's largest step ``peak / levels`` whose grid
    (integers ``low``..``high`` times the step) rounds and clips the row with the least squared error, with one
    temporary the size of ``rows`` at a time."""
    best_step, best_error = peak / levels, torch.full_like(peak, float("inf"))
    for fraction in torch.linspace(1.0 / candidates, 1.0, candidates).tolist():
        step = peak * (fraction / levels)
        error = ((rows / step[:, None]).round().clamp(low, high) * step[:, None] - rows).square().sum(dim=1)
        better = error < best_error
        best_step, best_error = torch.where(better, step, best_step), torch.where(better, error, best_error)
    return best_step


def mse_weight_steps(weight: torch.Tensor, bits: int, candidates: int = 100) -> torch.Tensor:
    """Per output channel, the step among ``candidates`` fractions of max|w| whose symmetric narrow-range grid
    (levels -(2^(b-1)-1)..2^(b-1)-1) rounds that channel's weights with the least squared error."""
    flat = weight.detach().float().flatten(1)
    top = 2 ** (bits - 1) - 1
    peak = flat.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    return _least_error_steps(flat, peak, top, -top, top, candidates)


def mse_activation_step(inputs: torch.Tensor, bits: int, signed: bool, peak_step: float,
                        candidates: int = 100) -> float:
    """The step among ``candidates`` fractions of ``peak_step`` whose per-tensor grid (unsigned 0..2^b-1, or
    signed -2^(b-1)..2^(b-1)-1) rounds and clips ``inputs`` with the least squared error."""
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    flat = inputs.detach().float().flatten()[None]
    return float(_least_error_steps(flat, torch.tensor([float(peak_step)]), 1, low, high, candidates))


@torch.no_grad()
def _mse_input_steps(model: nn.Module, images: torch.Tensor, batch_size: int, samples: int = 1 << 18) -> None:
    """Each low-bit layer's input step set by :func:`mse_activation_step`, in forward order, so that a layer
    sees its inputs as the already-set layers before it quantize them."""
    gen = torch.Generator().manual_seed(0)
    for layer in [module for module in model.modules() if is_lowbit(module)]:
        seen: list[torch.Tensor] = []
        hook = layer.register_forward_pre_hook(lambda _module, args, seen=seen: seen.append(args[0].detach().flatten()))
        try:
            for start in range(0, len(images), batch_size):
                model(normalize(images[start:start + batch_size], channels_last=False))
        finally:
            hook.remove()
        inputs = torch.cat(seen)
        inputs = inputs[torch.randperm(len(inputs), generator=gen)[:samples]]
        quant = layer.input_quant
        step = float(quant.scale())
        best = mse_activation_step(inputs, int(quant.bit_width()), bool(quant.is_signed), step)
        # the learned parameter is the step times Brevitas's integer range, as for the weights
        quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value.mul_(best / step)


@torch.no_grad()
def calibrate_activations(model: nn.Module, images: torch.Tensor, batch_size: int = 128,
                          weight_step_init: str = "max", activation_step_init: str = "percentile") -> None:
    """Initialise every step size: inputs from activation statistics on ``images`` (Brevitas calibration: the
    99.999th percentile of each input), weights from max|w| per output channel (Brevitas sets a learned scale on
    its first use), or, with ``weight_step_init="mse"``, from the step that rounds each channel's weights with the
    least error; ``activation_step_init="mse"`` then moves each input's step to the one that quantizes that
    input with the least error. At 3 bits the percentile step spends the grid on rare peaks, and training hardly
    moves it: with almost nothing clipped, its gradient is ~1e-4 of its value where a weight's is ~0.2."""
    check_step_inits(weight_step_init, activation_step_init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.graph.calibrate import calibration_mode

    model.eval()
    with calibration_mode(model):
        for start in range(0, len(images), batch_size):
            model(normalize(images[start:start + batch_size], channels_last=False))
    for module in model.modules():
        if is_lowbit(module):
            step = module.quant_weight().scale
            if weight_step_init == "mse":  # the learned parameter is the step times Brevitas's integer range
                learned = module.weight_quant.tensor_quant.scaling_impl.value
                target = mse_weight_steps(module.weight, int(module.weight_quant.bit_width()))
                learned.mul_((target.view_as(step) / step).view_as(learned))
    if activation_step_init == "mse":
        _mse_input_steps(model, images, batch_size)


@torch.no_grad()
def weight_levels(model: nn.Module) -> dict[str, int]:
    """Most distinct values any output channel's quantized weights take, per low-bit layer."""
    levels = {}
    for name, module in model.named_modules():
        if is_lowbit(module):
            weight = module.quant_weight().value.detach().flatten(1)
            levels[name] = max(len(torch.unique(row)) for row in weight)
    return levels


def _levels_by_bits(levels: dict[str, int], layers: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Most levels any channel uses, per weight width: at most 2^b - 1 each."""
    out: dict[str, int] = {}
    for name, count in levels.items():
        bits = str(layers.get(name, {}).get("weight_bits", 32))
        out[bits] = max(out.get(bits, 0), count)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def grid_weights_as_float(parent: Artifact, path: str | Path) -> nn.Module:
    """A QAT model's weights, on their grid, in the float architecture: where a QAT at fewer bits starts
    (progressive quantization, as APoT starts 3 bits from 4). Its learned step sizes are dropped: the new grid
    is calibrated afresh."""
    float_model = build_model(parent.spec)
    if parent.structure:
        apply_structure(float_model, parent.structure, str(path))
    names = set(float_model.state_dict())
    state = {k: v for k, v in parent.state.items() if k in names}
    return build_from_artifact(Artifact(spec=parent.spec, state=state, structure=parent.structure), path)


def parent_masks(parent: Artifact, path: str | Path, masks_from: str | None) -> dict[str, torch.Tensor]:
    """The pruning masks a QAT carries over: the parent's own; for a float parent written before masks were
    recorded, its zeros; for such a QAT parent, the zeros of the float ancestor ``masks_from``, which must be
    in its lineage by digest, with no pruning after it, and whose pruned weights the parent holds at zero."""
    if masks_from is None:
        if parent.quant and parent.masks is None and recorded_sparse_names(parent.lineage):
            raise ConfigError(f"{path} was written before pruning masks were recorded, and its zeros mix pruned "
                              "weights with grid levels: name the float model it was pruned into with masks_from")
        return pruning_masks(parent.state, parent.lineage, parent.masks)
    ancestor = load_artifact(masks_from)
    parents = [step.get("parent") for step in parent.lineage]
    if ancestor.digest not in parents:
        raise ConfigError(f"masks_from {masks_from} is not an ancestor of {path} (no step of its lineage starts "
                          "from it)")
    if ancestor.quant:
        raise ConfigError(f"masks_from {masks_from} is quantized ({ancestor.quant.get('mode')}): name a float model")
    later = parent.lineage[parents.index(ancestor.digest):]
    if any(step.get("stage") == "prune" for step in later):
        raise ConfigError(f"{path} was pruned again after masks_from {masks_from}: name the last pruned float model")
    masks = pruning_masks(ancestor.state, ancestor.lineage, ancestor.masks)
    for name, mask in masks.items():
        if name not in parent.state or parent.state[name].shape != mask.shape or \
                bool(parent.state[name][~mask].any()):
            raise ConfigError(f"{path} does not hold the pruned weights of masks_from {masks_from} at zero ({name})")
    return masks


def quantize_aware_training(checkpoint: str | Path, config: QuantizeConfig, out_dir: str | Path,
                            dataset: ImageDataset | None = None, progress: bool = True) -> QuantizeResult:
    """Low-bit QAT of a float (optionally pruned) artifact into ``out_dir/model.pt``; resumable."""
    out_dir = Path(out_dir)
    parent = load_artifact(checkpoint)
    if parent.quant and parent.quant.get("mode") != "qat":
        raise CompressionError(f"{checkpoint} is already quantized ({parent.quant.get('mode')}); "
                               "start QAT from its float parent")
    masks = parent_masks(parent, checkpoint, config.masks_from)
    saved = out_dir / "quantize.yaml"
    if saved.exists() and not same_stage_config(validate(QuantizeConfig, read_yaml(saved), str(saved)), config):
        raise ConfigError(f"{out_dir} holds a quantization run with another config: choose another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, dump_yaml(config).encode())
    started = now_iso()
    data = dataset_for(parent, dataset)
    input_shape = tuple(data.train_x.shape[1:])
    calibration = data.train_x[calibration_indices(data, parent, config.calibration_size, config.seed)]

    init_path = out_dir / "qat" / "init.pt"
    if not init_path.exists():
        model = grid_weights_as_float(parent, checkpoint) if parent.quant else load_model(checkpoint)[0]
        plan = plan_bits(model, config, calibration[:64])
        bits = effective_bits(model, plan, input_shape)
        apply_lowbit(model, plan, str(checkpoint))
        calibrate_activations(model, calibration, weight_step_init=config.weight_step_init,
                              activation_step_init=config.activation_step_init)
        quant = {"mode": "qat", "method": "brevitas", "layers": plan, **bits,
                 "defaults": {"weight_bits": config.weight_bits, "activation_bits": config.activation_bits,
                              "first_last_bits": config.first_last_bits},
                 "weights": "per-channel symmetric, learned step size", "activations": "per-tensor, learned step size",
                 "weight_step_init": config.weight_step_init, "activation_step_init": config.activation_step_init}
        # the quantize step precedes its fine-tuning run in the lineage (as prune does); its metrics are
        # completed when the model is final
        init = Artifact.from_model(parent.spec, model, structure=parent.structure, quant=quant,
                                   lineage=[*parent.lineage, quantize_step(config, parent, bits)], metrics={},
                                   masks=masks or None)
        save_artifact(init, init_path)
    trained_path = init_path
    result_metrics: dict[str, Any] = {}
    if config.finetune is not None:
        init_artifact = load_artifact(init_path)
        # Brevitas's layers cannot be compiled (QuantizeConfig refuses compile: true): eager
        overrides = {"compile": False, **config.finetune}
        trained_path, result_metrics = finetune(
            init_path, init_artifact.spec, training_config(parent), overrides, out_dir / "qat" / "finetune",
            f"{out_dir.name}-qat", teacher=str(checkpoint) if config.distill_from_parent else None,
            dataset=data, store=out_dir.parent / DB_NAME, progress=progress)

    trained_model, trained = load_model(trained_path)
    final = Artifact(spec=trained.spec, state=snap_weights(trained_model), structure=trained.structure,
                     quant=trained.quant, lineage=list(trained.lineage), metrics=dict(trained.metrics),
                     masks=trained.masks)
    snapped = build_from_artifact(final).eval()
    probe = normalize(calibration[:32], channels_last=False)
    with torch.no_grad():
        reference = trained_model.eval()(probe)
        drift = float((snapped(probe) - reference).abs().max())
    if drift > 1e-3 * max(1.0, float(reference.abs().max())):
        raise CompressionError(f"weights snapped to their grid change the outputs by {drift:.3g}: step sizes unstable")
    quant = trained.quant or {}
    metrics = {"mode": "qat", **{k: quant.get(k) for k in ("weight_bits", "activation_bits", "op_bits")},
               "max_weight_levels": max(weight_levels(snapped).values()),
               "levels_by_bits": _levels_by_bits(weight_levels(snapped), quant.get("layers") or {}),
               **{k: result_metrics[k] for k in ("val_acc", "test_acc", "selected_epoch", "train_seconds")
                  if k in result_metrics},
               "params": count_model(snapped, input_shape).params}
    # a progressive QAT's parent is itself low-bit: its accuracy is not the float model's
    metrics["parent_test_acc" if parent.quant else "float_test_acc"] = parent.metrics.get("test_acc")
    step = next(s for s in reversed(final.lineage) if s.get("stage") == "quantize")
    step["metrics"] = {**step.get("metrics", {}), **metrics}
    final.metrics = {**final.metrics, **metrics}
    path = out_dir / "model.pt"
    save_artifact(final, path)
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2, default=str).encode())
    settings = config.model_dump(mode="json")
    ResultsStore(out_dir.parent / DB_NAME).record(
        name=out_dir.name, command="quantize", status="done", started=started, finished=now_iso(),
        run_dir=str(out_dir), model=final.spec["model"], config_hash=config_hash(settings),
        git_commit=code_version()["git_commit"], config=settings, metrics=metrics, wall_s=metrics.get("train_seconds"),
    )
    return QuantizeResult(path, metrics)
