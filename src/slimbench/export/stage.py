"""The export stage: artifact in, ONNX file (float32, float16 or int8) out, proven against PyTorch, with a card.

Every export is run with ONNX Runtime on test images and compared with the PyTorch model it came from;
an export that disagrees beyond tolerance raises instead of leaving a file that looks fine. The file then runs
on every validation and test image, and the accuracy its sidecar and card record is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from slimbench.artifact import (
    Artifact,
    atomic_write,
    build_from_artifact,
    load_artifact,
    read_sidecar,
    update_sidecar_metrics,
    write_sidecar,
)
from slimbench.compress.calibration import dataset_for, validation_images
from slimbench.compress.quantize import QuantizeConfig, quantize
from slimbench.data import ImageDataset
from slimbench.errors import ExportError
from slimbench.export.card import write_model_card
from slimbench.export.standalone import write_predict_script
from slimbench.export.torchscript import check_torchscript_parity, export_torchscript
from slimbench.measure import count_model
from slimbench.measure.counts import scored_nonzero, scored_weight_bits
from slimbench.measure.engines import compare_engines, engine_correct
from slimbench.measure.latency import measure_latency, measure_onnx_latency, measure_openvino_latency
from slimbench.measure.summary import memory_at_stored_bits
from slimbench.runtimes.onnx import DEFAULT_OPSET, check_parity, export_onnx
from slimbench.runtimes.openvino import openvino_available


@dataclass
class ExportResult:
    path: Path
    card: Path
    parity: dict[str, Any]
    extra_files: list[Path]


@dataclass
class ExportJob:
    """What a format's exporter gets: the model and its artifact, where to write, and the data to check it on."""

    checkpoint: Path
    parent: Artifact
    model: nn.Module
    out_dir: Path
    precision: str
    data: ImageDataset
    images: torch.Tensor  # parity images (test split)
    labels: torch.Tensor
    input_shape: tuple[int, ...]
    options: dict[str, Any]  # dynamic_batch, batch_size, opset, quantize_config, latency, commands


@dataclass(frozen=True)
class ExportFormat:
    """An export format as a plug-in: its name, the precisions it writes, and the function that writes it."""

    name: str
    precisions: tuple[str, ...]
    write: Callable[[ExportJob], ExportResult]


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    precision: Literal["fp32", "fp16", "int8"] = "fp32",
    format: str = "onnx",
    dynamic_batch: bool = True,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
    parity_images: int = 500,
    quantize_config: QuantizeConfig | None = None,
    dataset: ImageDataset | None = None,
    latency: bool = True,
    commands: list[str] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` in ``format`` (a registered export format: onnx, torchscript) with a parity report
    and MODEL_CARD.md; ONNX writes ``out_dir/model[.fp16|.int8|.lowbit].onnx``."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    fmt = FORMATS[format]
    if precision not in fmt.precisions:
        raise ExportError(f"{format} export writes {', '.join(fmt.precisions)} only, not {precision}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parent = load_artifact(checkpoint)
    model = build_from_artifact(parent, checkpoint).eval()
    if parent.quant and parent.quant.get("dtype"):
        model = model.float()  # a half-precision artifact exports from its (exactly representable) float copy
    data = dataset_for(parent, dataset)
    count = min(parity_images, len(data.test_x))
    job = ExportJob(Path(checkpoint), parent, model, out_dir, precision, data, data.test_x[:count], data.test_y[:count],
                    tuple(data.test_x.shape[1:]),
                    {"dynamic_batch": dynamic_batch, "batch_size": batch_size, "opset": opset,
                     "quantize_config": quantize_config, "latency": latency, "commands": commands})
    return fmt.write(job)


def file_accuracies(job: ExportJob, engine: str, path: Path, batch_size: int) -> dict[str, Any]:
    """The exported file's own accuracy, run by ``engine``, on the validation split its parent was selected on and
    on the whole test split, with the float model's figures beside them: what the sidecar and card record."""
    data = job.data
    splits = {"test": (data.test_x, data.test_y)}
    validation = validation_images(data, job.parent)
    if validation is not None:
        splits["val"] = validation
    result: dict[str, Any] = {"float_val_acc": job.parent.metrics.get("val_acc"),
                              "float_test_acc": job.parent.metrics.get("test_acc")}
    for split, (images, labels) in splits.items():
        correct = engine_correct(engine, path, images, labels, batch_size)
        result.update({f"{split}_acc": correct / len(labels), f"{split}_correct": correct,
                       f"{split}_images": len(labels)})
    return result


def record_network_figures(path: Path, checkpoint: Path, model: nn.Module, parent: Artifact,
                           input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Flash, peak RAM and the MicroNet counts of the network ``path`` was exported from, added to its sidecar;
    returns the memory report for the card.

    They are counted on the network, not on the file, so an export scored or compared after its source
    checkpoint has moved or gone would otherwise have none: recorded here, the export stands alone.
    """
    from slimbench.score.formula import micronet_inputs

    quant = read_sidecar(path).get("quant") or {}
    memory = memory_at_stored_bits(model.float(), input_shape, quant, parent.spec, parent.structure)
    source_model = build_from_artifact(parent, checkpoint).eval()  # as the scorer loads it: both count one network
    qw = scored_weight_bits(source_model, quant, parent.lineage, parent.masks)
    micronet_params, micronet_ops = micronet_inputs(source_model.float(), quant, qw)
    figures: dict[str, Any] = {"micronet_params": micronet_params, "micronet_ops": micronet_ops,
                               "scored_weight_bits": qw}
    if "peak_ram_bytes" in memory:
        figures.update({"flash_bytes": int(memory["flash_bytes"]), "peak_ram_bytes": int(memory["peak_ram_bytes"])})
    update_sidecar_metrics(path, figures)
    return memory


def without_split_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """A parent's metrics less its per-split figures, which belong to the parent, not to a file made from it."""
    return {k: v for k, v in metrics.items() if not k.startswith(("val_", "test_"))}


def _write_torchscript(job: ExportJob) -> ExportResult:
    path = export_torchscript(job.model, job.out_dir / "model.torchscript.pt", job.input_shape)
    parity = check_torchscript_parity(job.model, path, job.images, job.labels).as_dict()
    return ExportResult(path=path, card=_card_for_torchscript(job.out_dir, path, parity), parity=parity, extra_files=[])


def _write_onnx(job: ExportJob) -> ExportResult:
    checkpoint, parent, model, out_dir, precision, data = (job.checkpoint, job.parent, job.model, job.out_dir,
                                                          job.precision, job.data)
    images, labels, input_shape = job.images, job.labels, job.input_shape
    dynamic_batch, batch_size, opset, quantize_config, latency, commands = (
        job.options[k] for k in ("dynamic_batch", "batch_size", "opset", "quantize_config", "latency", "commands"))
    extra: list[Path] = []
    lowbit = (parent.quant or {}).get("mode") == "qat"
    if lowbit and precision != "fp32":
        raise ExportError(f"{checkpoint} is a low-bit QAT model: it exports at its own bits (omit --precision)")
    if precision == "int8":
        config = (quantize_config or QuantizeConfig()).model_copy(update={"mode": "int8"})
        result = quantize(checkpoint, config, out_dir, dataset=data)
        path = result.path
        parity = result.metrics["parity"]
        extra.append(out_dir / "model.float.onnx")
    else:
        half = precision == "fp16"
        name = "model.fp16.onnx" if half else "model.lowbit.onnx" if lowbit else "model.onnx"
        path = export_onnx(model, out_dir / name, input_shape, dynamic_batch=dynamic_batch, batch_size=batch_size,
                           opset=opset, half=half)
        # Quantized layers round: a float difference in the last bit can move a value to the next level,
        # so low-bit exports are held to top-1 agreement, like int8, rather than to a logit tolerance.
        tolerance = None if lowbit else 5e-2 if half else 1e-3
        try:
            parity = check_parity(model, path, images, labels, max_abs_diff=tolerance,
                                  min_agreement=0.99 if half or lowbit else 0.999).as_dict()
        except ExportError:
            path.rename(path.with_suffix(".rejected.onnx"))
            raise
        quant = ({"mode": "fp16", "weight_bits": 16, "activation_bits": 16} if half
                 else {**parent.quant, "format": "onnx-qcdq"} if lowbit else parent.quant)
        counts = count_model(model.float(), input_shape)
        accuracy = file_accuracies(job, "onnxruntime", path, 500 if dynamic_batch else batch_size)
        write_sidecar(path, parent, quant, list(parent.lineage), str(checkpoint),
                      {**without_split_figures(parent.metrics), **accuracy, "parity": parity, "params": counts.params,
                       "nonzero_params": scored_nonzero(model, quant, parent.lineage, parent.masks), "macs": counts.macs})
    timings = []
    engines: list[dict[str, Any]] | None = None
    if latency:
        timings = [measure_latency(model.float(), batch_size, input_shape, repeats=30),
                   measure_onnx_latency(path, batch_size, input_shape, repeats=30)]
        if openvino_available():  # every installed engine, at stated precisions
            timings += [measure_openvino_latency(path, batch_size, input_shape, repeats=30, precision=p)
                        for p in ("f32", "bf16")]
            quantized = precision == "int8" or lowbit
            engines = compare_engines(path, data.test_x, data.test_y, ("openvino", "openvino-bf16"), quantized)
    counts = count_model(model.float(), input_shape)
    script = write_predict_script(out_dir, path, data.classes, input_shape)
    memory = record_network_figures(path, checkpoint, model, parent, input_shape)
    sidecar = read_sidecar(path)
    extra.append(script)
    card = write_model_card(out_dir / "MODEL_CARD.md", path, sidecar, counts, parity, timings, commands or [],
                            predict_script=script, engines=engines, memory=memory)
    return ExportResult(path=path, card=card, parity=parity, extra_files=extra)


register_format(ExportFormat("onnx", ("fp32", "fp16", "int8"), _write_onnx))
register_format(ExportFormat("torchscript", ("fp32",), _write_torchscript))


def _card_for_torchscript(out_dir: Path, path: Path, parity: dict[str, Any]) -> Path:
    card = out_dir / "MODEL_CARD.md"
    atomic_write(card, (f"# Model card: {path.name}\n\nTorchScript (traced, float32) for libtorch; parity with eager "
                        f"PyTorch on {parity['images']} test images: top-1 agreement {parity['top1_agreement']:.2%}, "
                        f"max logit difference {parity['max_abs_diff']:.3g}. Export to ONNX for the full card, "
                        "int8 and ONNX Runtime latency.\n").encode())
    return card
