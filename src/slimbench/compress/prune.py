"""The prune stage: artifact in, pruned (and optionally fine-tuned) artifact out.

One-shot prunes once; iterative prunes in ``steps`` steps along a linear or cubic ramp and fine-tunes after
each. Every step writes ``step<k>/pruned.pt`` and, when fine-tuning, a full training run in
``step<k>/finetune/``; an interrupted pipeline resumes from what is on disk. Ratios for the score are
recorded against the *original* (unpruned) architecture of the lineage: ``structured_ratio`` is the share
of its parameters removed by this step, ``unstructured_ratio`` the share newly set to zero.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import nn

from slimbench.artifact import (
    Artifact,
    atomic_write,
    code_version,
    config_hash,
    lineage_step,
    load_artifact,
    load_model,
    now_iso,
    save_artifact,
)
from slimbench.compress.calibration import calibration_indices, dataset_for, training_config
from slimbench.compress.finetune import finetune, same_stage_config
from slimbench.compress.structured import measure_target, prune_structured, resolve_round_to
from slimbench.config import dump_yaml, read_yaml, validate
from slimbench.data import ImageDataset, normalize
from slimbench.errors import CompressionError, ConfigError
from slimbench.hardware import host
from slimbench.measure import count_model
from slimbench.models import build_model
from slimbench.models.structure import structure_changes
from slimbench.runs import DB_NAME, ResultsStore, make_run_dir
from slimbench.sparsity.config import PruneConfig, ramp_ratios
from slimbench.sparsity.criteria import criterion
from slimbench.sparsity.select import select_layers
from slimbench.sparsity.unstructured import masks_after_pruning, prune_unstructured, pruning_masks


@dataclass
class PruneResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]


def _input_shape(dataset: ImageDataset | None) -> tuple[int, ...]:
    return tuple(dataset.train_x.shape[1:]) if dataset is not None else (3, 32, 32)


def _calibration(dataset: ImageDataset, parent: Artifact, config: PruneConfig):  # type: ignore[no-untyped-def]
    """Gradients of the loss on a few training batches, for Taylor ranking."""
    idx = calibration_indices(dataset, parent, config.calibration_batches * config.calibration_batch_size, config.seed)

    def calibrate(model: nn.Module) -> None:
        model.eval()
        for start in range(0, len(idx), config.calibration_batch_size):
            batch = idx[start:start + config.calibration_batch_size]
            x = normalize(dataset.train_x[batch], channels_last=False)
            F.cross_entropy(model(x), dataset.train_y[batch]).backward()

    return calibrate


def prune_model(
    model: nn.Module,
    spec: dict[str, Any],
    config: PruneConfig,
    ratio: float | None = None,
    input_shape: tuple[int, ...] = (3, 32, 32),
    calibrate: Any = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune an in-memory model to ``ratio`` (cumulative, of the original architecture); returns a new model.

    The step's record holds counts before and after and the ratios the score reads.
    """
    ratio = config.ratio if ratio is None else ratio
    architecture = build_model(spec).eval()
    original = count_model(architecture, input_shape)
    before = count_model(model.eval(), input_shape)
    record: dict[str, Any] = {"kind": config.kind, "method": config.method, "ratio": ratio, "scope": config.scope}
    if config.kind == "structured":
        reference = measure_target(architecture, config, input_shape)
        result = prune_structured(model, config, ratio, reference, input_shape, calibrate)
        pruned = result.model
        record.update(target=config.target, channel_ratio=result.channel_ratio, achieved=result.achieved,
                      round_to=resolve_round_to(config.round_to), host=host().describe())
        if config.require_faster:
            record["latency_b64"] = measured_speedup(model, pruned, input_shape)
        sparse_names: list[str] = []
    else:
        import copy

        pruned = copy.deepcopy(model)
        layers = select_layers(pruned, config)
        report = prune_unstructured(layers, config, ratio)
        record.update(sparsity=report.sparsity, per_layer_sparsity=report.per_layer)
        sparse_names = [f"{name}.weight" for name in layers]
    after = count_model(pruned.eval(), input_shape)
    structured_removed = before.params - after.params
    newly_zero = (before.nonzero_params - after.nonzero_params) - structured_removed
    if ratio > 0 and structured_removed <= 0 and newly_zero <= 0:
        raise ConfigError(
            f"pruning to ratio {ratio} removed nothing: ratios count against the original architecture "
            f"({original.params:,} parameters), of which this model keeps {before.nonzero_params:,} non-zero; "
            "ask for a higher ratio")
    record.update(
        original_params=original.params, original_macs=original.macs,
        params_before=before.params, params_after=after.params,
        nonzero_before=before.nonzero_params, nonzero_after=after.nonzero_params,
        macs_before=before.macs, macs_after=after.macs,
        structured_ratio=structured_removed / original.params,
        unstructured_ratio=max(newly_zero, 0) / original.params,
        sparse_params=sparse_names,
    )
    return pruned, record


def measured_speedup(parent: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...], batch_size: int = 64,
                     rounds: int = 3, repeats: int = 30) -> dict[str, Any]:
    """ONNX Runtime fp32 latency of both models on this machine, timed in alternating rounds (so that a busy
    moment hits both); raises when the pruned model is not faster. Channel counts that do not fill the CPU's
    SIMD blocks can make a smaller network slower (16-wide AVX-512 kernels with channels rounded to 8)."""
    from slimbench.measure.latency import measure_onnx_latency
    from slimbench.runtimes.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        paths = [export_onnx(m.eval(), Path(tmp) / f"{label}.onnx", input_shape)
                 for label, m in (("parent", parent), ("pruned", pruned))]
        best = [float("inf"), float("inf")]
        for _ in range(rounds):
            for i, onnx_path in enumerate(paths):
                best[i] = min(best[i], measure_onnx_latency(onnx_path, batch_size, input_shape, repeats=repeats).median_ms)
    result = {"engine": "onnxruntime fp32", "batch_size": batch_size, "parent_ms": best[0], "pruned_ms": best[1],
              "speedup": best[0] / best[1], "host": host().describe()}
    if best[1] >= best[0]:
        raise CompressionError(
            f"the pruned model is not faster on this machine ({host().describe()}): {best[1]:.2f} ms against "
            f"{best[0]:.2f} ms at batch {batch_size} in ONNX Runtime fp32; try round_to: auto or another ratio")
    return result


def _pruned_artifact(parent: Artifact, pruned: nn.Module, config: PruneConfig, record: dict[str, Any]) -> Artifact:
    unpruned = build_model(parent.spec)
    step = lineage_step("prune", config.model_dump(mode="json"), parent.digest, record)
    parent_masks = pruning_masks(parent.state, parent.lineage, parent.masks)
    after = pruned.state_dict()
    if record["kind"] == "unstructured":
        masks = masks_after_pruning(parent.state, after, record["sparse_params"], parent_masks)
    else:  # channels removed, masks re-read from the surviving weights: a float model's zeros are pruned weights
        masks = {name: after[name].detach().cpu() != 0 for name in parent_masks if name in after}
    return Artifact.from_model(
        parent.spec, pruned, structure=structure_changes(unpruned, pruned) or None, quant=parent.quant,
        lineage=[*parent.lineage, step], metrics={k: v for k, v in record.items() if k != "per_layer_sparsity"},
        masks=masks or None,
    )


def prune(
    checkpoint: str | Path,
    config: PruneConfig,
    run_dir: str | Path | None = None,
    dataset: ImageDataset | None = None,
    progress: bool = True,
    runs_root: str | Path | None = None,
) -> PruneResult:
    """Prune ``checkpoint`` as ``config`` says, fine-tuning after each step when asked; writes ``model.pt``.

    Re-running with the same ``run_dir`` and config continues an interrupted pipeline.
    """
    parent = load_artifact(checkpoint)
    path = Path(run_dir) if run_dir else make_run_dir(config.name, f"{parent.spec['model']}-pruned", runs_root)
    saved = path / "prune.yaml"
    fresh = not saved.exists()
    if saved.exists():
        previous = validate(PruneConfig, read_yaml(saved), str(saved))
        if not same_stage_config(previous, config):
            raise ConfigError(f"{path} holds a pruning run with another config: choose another directory")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, dump_yaml(config).encode())

    store = path.parent / DB_NAME  # fine-tuning runs and the prune itself share the runs folder's store
    started = now_iso()
    train_base = training_config(parent)
    ranks_by_gradients = config.kind == "structured" and criterion(config.method, "structured").needs_gradients
    if config.finetune is not None or ranks_by_gradients:
        dataset = dataset_for(parent, dataset)
    input_shape = _input_shape(dataset)
    calibrate = _calibration(dataset, parent, config) if ranks_by_gradients and dataset else None

    ratios = ramp_ratios(config.ratio, config.steps, config.ramp) if config.schedule == "iterative" else [config.ratio]
    current_path = Path(checkpoint)
    steps: list[dict[str, Any]] = []
    for k, ratio in enumerate(ratios, start=1):
        step_dir = path / f"step{k}"
        pruned_path = step_dir / "pruned.pt"
        if not pruned_path.exists():
            model, current = load_model(current_path)
            try:
                pruned, record = prune_model(model, current.spec, config, ratio, input_shape, calibrate)
            except ConfigError:
                if fresh and k == 1:  # nothing was done: the corrected command may reuse the directory
                    saved.unlink()
                raise
            record["step"] = k
            save_artifact(_pruned_artifact(current, pruned, config, record), pruned_path)
        pruned_artifact = load_artifact(pruned_path)
        summary = {"step": k, "ratio": ratio, **{key: pruned_artifact.metrics.get(key) for key in (
            "params_after", "nonzero_after", "macs_after", "structured_ratio", "unstructured_ratio")}}
        current_path = pruned_path
        if config.finetune is not None:
            current_path, result_metrics = finetune(
                pruned_path, pruned_artifact.spec, train_base, config.finetune, step_dir / "finetune",
                f"{path.name}-step{k}", teacher=str(checkpoint) if config.distill_from_parent else None,
                dataset=dataset, store=store, progress=progress)
            summary.update(val_acc=result_metrics.get("val_acc"), test_acc=result_metrics.get("test_acc"),
                           train_seconds=result_metrics.get("train_seconds"))
        steps.append(summary)

    final = load_artifact(current_path)
    save_artifact(final, path / "model.pt")
    metrics = {"checkpoint": str(checkpoint), "model": str(path / "model.pt"), "steps": steps,
               **{k: v for k, v in final.metrics.items() if isinstance(v, int | float | str)}}
    step_seconds = [s["train_seconds"] for s in steps if isinstance(s.get("train_seconds"), int | float)]
    if step_seconds:  # the final model's own record holds only the last step's fine-tune
        metrics["train_seconds"] = sum(step_seconds)
    atomic_write(path / "metrics.json", json.dumps(metrics, indent=2).encode())
    if not steps:
        raise CompressionError("nothing was pruned")
    settings = config.model_dump(mode="json")
    ResultsStore(store).record(
        name=path.name, command="prune", status="done", started=started, finished=now_iso(), run_dir=str(path),
        model=final.spec["model"], config_hash=config_hash(settings), git_commit=code_version()["git_commit"],
        config=settings, metrics={**metrics, "params": steps[-1]["params_after"]}, wall_s=None,
    )
    return PruneResult(run_dir=path, model_path=path / "model.pt", metrics=metrics)
