"""``measure``: one report of a model artifact, an exported ONNX model, or a zoo model with fresh weights."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slimbench.artifact import is_exported_file, load_model
from slimbench.errors import SlimbenchError
from slimbench.measure.counts import (
    count_micronet_ops,
    count_model,
    layer_bits_of,
    sparse_storage_bytes,
    storage_bytes,
)
from slimbench.measure.engines import FILE_ENGINES, compare_engines, fastest_faithful
from slimbench.measure.latency import (
    measure_latency,
    measure_litert_latency,
    measure_onnx_latency,
    measure_openvino_latency,
)
from slimbench.models import build_model, normalize_spec


def export_temporary(model: Any, folder: Path, shape: tuple[int, ...]) -> Path:
    """A float ONNX export of ``model`` in ``folder``, so that file engines time the same network as PyTorch."""
    from slimbench.runtimes.onnx import export_onnx

    return export_onnx(model, folder / "model.onnx", shape)


def export_temporary_tflite(model: Any, folder: Path, shape: tuple[int, ...]) -> Path:
    """A float32 .tflite of ``model`` in ``folder``, to time the LiteRT interpreter on the same network."""
    from slimbench.runtimes.litert import export_tflite

    return export_tflite(model, folder / "model.tflite", shape)


def memory_at_stored_bits(model: Any, shape: tuple[int, ...], quant: dict[str, Any], spec: dict[str, Any],
            structure: dict[str, Any] | None) -> dict[str, Any]:
    """Flash and batch-1 peak RAM at the model's own bits (QAT: each layer's weight bits, the widest input).
    Low-bit layers do not trace with torch.fx: their float twin (same structure, same shapes) is measured."""
    from slimbench.measure.memory import float_twin, memory_report, stored_bits

    weight_bits, activation_bits = stored_bits(quant)
    if quant.get("mode") == "qat":
        model = float_twin(spec, structure)
    try:
        return asdict(memory_report(model, shape, activation_bits, weight_bits))
    except SlimbenchError as exc:
        return {"error": str(exc)}


class MeasurementWarning(UserWarning):
    """A figure that could not be measured: tables show it as missing, and this says why."""


def memory_of(model_or_checkpoint: str | Path) -> dict[str, int] | None:
    """Flash and batch-1 peak RAM (bytes) of a model artifact or exported file, at its stored bits; None, with a
    MeasurementWarning naming the file and the reason, when it cannot be measured (an export whose source
    checkpoint is gone, a network torch.fx cannot trace). An export's own sidecar figures come first."""
    try:
        if is_exported_file(model_or_checkpoint):
            from slimbench.artifact import read_sidecar

            recorded = read_sidecar(model_or_checkpoint).get("metrics") or {}
            if "flash_bytes" in recorded and "peak_ram_bytes" in recorded:
                return {"flash_bytes": int(recorded["flash_bytes"]), "peak_ram_bytes": int(recorded["peak_ram_bytes"])}
        memory = measure(model_or_checkpoint)["memory"]
    except (FileNotFoundError, SlimbenchError) as exc:
        memory = {"error": str(exc)}
    if "peak_ram_bytes" not in memory:
        reason = memory.get("error", "the memory report has no peak RAM")
        warnings.warn(f"{model_or_checkpoint}: no flash or peak RAM figure: {reason}", MeasurementWarning,
                      stacklevel=2)
        return None
    return {"flash_bytes": int(memory["flash_bytes"]), "peak_ram_bytes": int(memory["peak_ram_bytes"])}


def _layer_bits(quant: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """A layer's weight and input bits: its own with mixed precision (QAT), else the model's, else 32."""
    quant = quant or {}
    if quant.get("mode") == "qat":
        own = (quant.get("layers") or {}).get(name)
        return {"weight_bits": own["weight_bits"], "activation_bits": own["activation_bits"]} if own else \
            {"weight_bits": 32, "activation_bits": 32}
    return {"weight_bits": quant.get("weight_bits", 32), "activation_bits": quant.get("activation_bits", 32)}


def measure(model_or_checkpoint: str | Path, latency: bool = False, batch_sizes: tuple[int, ...] = (1, 64),
            repeats: int = 50, engines: tuple[str, ...] = ("pytorch-eager", "onnxruntime"),
            accuracy_split: str | None = None, engine_accuracy: bool | None = None) -> dict[str, Any]:
    """Parameters, MACs (per layer too), size at fp32/fp16/int8, and optionally CPU latency per engine.

    A ``.pt`` artifact is measured as saved; a ``.onnx`` file exported by slimbench through its sidecar (counts,
    bits) and, for PyTorch timings, the checkpoint it came from; a model name (``resnet20``) is built with
    fresh weights. ``engines`` picks among pytorch-eager, pytorch-compile, onnxruntime, openvino(-bf16) and litert;
    a PyTorch model is exported to a temporary ONNX (or .tflite) file to time those engines, so all of them run
    the same network. A .tflite file is timed in LiteRT (and its source checkpoint in PyTorch), never through a
    stand-in ONNX file of a different precision.
    """
    path = Path(model_or_checkpoint)
    onnx_file: Path | None = None
    tflite_file: Path | None = None
    report: dict[str, Any] = {}
    if path.suffix == ".tflite":
        engines = (*[e for e in engines if e.startswith("pytorch")], "litert")
        tflite_file = path
    if is_exported_file(path):
        from slimbench.artifact import read_sidecar

        sidecar = read_sidecar(path)
        onnx_file = path if path.suffix == ".onnx" else None
        source = Path(sidecar.get("source_checkpoint") or "")
        model = load_model(source)[0] if source.is_file() else None
        spec = sidecar["spec"]
        structure = sidecar.get("structure")
        report["quant"] = sidecar.get("quant")
        report["file_bytes"] = path.stat().st_size
        report["recorded_accuracy"] = {k: sidecar["metrics"][k] for k in ("val_acc", "test_acc")
                                       if isinstance((sidecar.get("metrics") or {}).get(k), int | float)}
    elif path.exists():
        model, artifact = load_model(path)
        spec, structure = artifact.spec, artifact.structure
        report["quant"] = artifact.quant
    else:
        spec, structure = normalize_spec({"model": str(model_or_checkpoint)}), None
        model = build_model(spec).eval()
    if model is None:
        raise FileNotFoundError(f"{path}: the checkpoint it was exported from is gone, so it cannot be counted")
    model = model.float()
    counts = count_model(model)
    report.update({
        "source": str(path) if path.exists() else f"{spec['model']} (fresh weights)",
        "spec": spec,
        "rule": counts.rule,
        "input_shape": counts.input_shape,
        "params": counts.params,
        "trainable_params": counts.trainable_params,
        "nonzero_params": counts.nonzero_params,
        "macs": counts.macs,
        "size_bytes": {f"{bits}-bit": storage_bytes(counts.params, bits) for bits in (32, 16, 8)},
        # bitmask + non-zero values: what unstructured sparsity saves on disk, where it pays
        "sparse_size_bytes": {f"{bits}-bit": sparse_storage_bytes(counts.params, counts.nonzero_params, bits)
                              for bits in (32, 16, 8)},
        "layers": [{**asdict(layer), **_layer_bits(report.get("quant"), layer.name)} for layer in counts.layers],
    })
    quant = report.get("quant") or {}
    # MicroNet-style operations (multiplies at their bits, 32-bit additions, batch norm), 32-bit equivalents
    report["micronet_ops"] = count_micronet_ops(model, *layer_bits_of(quant), input_shape=tuple(counts.input_shape)).total
    if "weight_bits" in quant:  # packed at the model's own (effective) weight width
        report["size_bytes"]["as quantized"] = storage_bytes(counts.params, float(quant["weight_bits"]))
    report["memory"] = memory_at_stored_bits(model, tuple(counts.input_shape), quant, spec, structure)
    if accuracy_split is not None:
        if path.suffix != ".pt":
            raise FileNotFoundError(f"{path}: accuracy is measured on a model.pt artifact (the split it trained with)")
        from slimbench.measure.report import evaluate_checkpoint

        result = evaluate_checkpoint(path, split=accuracy_split)
        report["accuracy"] = {"split": accuracy_split, "accuracy": result["accuracy"], "images": result.get("count")}
    if latency:
        timings = []
        shape = tuple(counts.input_shape)
        with tempfile.TemporaryDirectory() as tmp:
            if "onnxruntime" in engines and onnx_file is None:
                onnx_file = export_temporary(model, Path(tmp), shape)
            for batch in batch_sizes:
                if "pytorch-eager" in engines:
                    timings.append(measure_latency(model, batch, shape, repeats=repeats))
                if "pytorch-compile" in engines:
                    timings.append(measure_latency(model, batch, shape, repeats=repeats, compile=True))
                if "onnxruntime" in engines and onnx_file is not None:
                    timings.append(measure_onnx_latency(onnx_file, batch, shape, repeats=repeats))
                for engine, precision in (("openvino", "f32"), ("openvino-bf16", "bf16")):
                    if engine in engines:
                        source = onnx_file or export_temporary(model, Path(tmp), shape)
                        onnx_file = source
                        timings.append(measure_openvino_latency(source, batch, shape, repeats=repeats,
                                                                precision=precision))
                if "litert" in engines:
                    tflite_file = tflite_file or export_temporary_tflite(model, Path(tmp), shape)
                    timings.append(measure_litert_latency(tflite_file, batch, shape, repeats=repeats))
        report["latency"] = [asdict(t) for t in timings]
    file_engines = [e for e in engines if e in FILE_ENGINES]
    if (engine_accuracy if engine_accuracy is not None else path.suffix == ".onnx" and latency and
            any(e != "onnxruntime" for e in file_engines)):
        if path.suffix != ".onnx":
            raise FileNotFoundError(f"{path}: engine accuracy is measured on an exported .onnx file")
        from slimbench.artifact import training_data
        from slimbench.data import load_dataset

        data = training_data(sidecar.get("lineage") or [])
        dataset = load_dataset(data.get("name", "cifar10"), data.get("dir"))
        quantized = (report.get("quant") or {}).get("mode") in ("int8", "qat")
        report["engines"] = compare_engines(path, dataset.test_x, dataset.test_y, tuple(file_engines), quantized)
        best = fastest_faithful(report["engines"], report.get("latency", []))
        report["fastest_faithful"] = best and {k: best[k] for k in ("engine", "precision", "batch_size", "median_ms")}
    return report
