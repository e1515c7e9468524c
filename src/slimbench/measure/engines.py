"""Which engine to ship: each engine's accuracy on the full test set, its agreement with the reference engine
(ONNX Runtime running the file as exported), and the fastest one that stays faithful to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimbench.data import normalize
from slimbench.errors import ExportError
from slimbench.measure.latency import ENGINE_PRECISION
from slimbench.runtimes.onnx import compare_logits, onnx_session

FILE_ENGINES = ("onnxruntime", "openvino", "openvino-bf16")
REFERENCE = "onnxruntime"
ACCURACY_TOLERANCE = 0.001  # an engine within 0.1 point of the reference's accuracy (and passing parity) is faithful


def engine_logits(engine: str, path: str | Path, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of the exported model at ``path`` run by ``engine`` on uint8 ``images`` (the last batch padded)."""
    if engine == "onnxruntime":
        session = onnx_session(path)
        declared = session.get_inputs()[0]
        dtype = np.float16 if "float16" in declared.type else np.float32

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {declared.name: x.astype(dtype)})[0]
    elif engine == "litert":
        from slimbench.runtimes.litert import litert_runner

        run = litert_runner(path)
    elif engine.startswith("openvino"):
        from slimbench.runtimes.openvino import openvino_runner

        run = openvino_runner(path, batch_size, "bf16" if engine.endswith("bf16") else "f32")
    else:
        raise ExportError(f"engine {engine!r} does not run exported files; use one of {', '.join(FILE_ENGINES)}, "
                          "or litert for a .tflite file")
    outputs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size], channels_last=False).numpy()
        real = len(x)
        if real < batch_size:  # static-shape engines: pad, then drop the padding's outputs
            x = np.concatenate([x, np.zeros((batch_size - real, *x.shape[1:]), x.dtype)])
        outputs.append(torch.from_numpy(np.asarray(run(x), dtype=np.float32)[:real]))
    return torch.cat(outputs)


def engine_correct(engine: str, path: str | Path, images: torch.Tensor, labels: torch.Tensor,
                   batch_size: int = 500) -> int:
    """How many of ``images`` the exported file at ``path`` classifies right when ``engine`` runs it."""
    return int((engine_logits(engine, path, images, batch_size).argmax(1) == labels).sum())


def compare_engines(path: str | Path, images: torch.Tensor, labels: torch.Tensor, engines: tuple[str, ...],
                    quantized: bool) -> list[dict[str, Any]]:
    """Each engine's accuracy and parity with the reference. An engine whose arithmetic changes predictions
    (OpenVINO's bf16 on an fp32 model) is marked unfaithful with the reason, never reported as the model's."""
    reference = engine_logits(REFERENCE, path, images)
    reference_acc = float((reference.argmax(1) == labels).float().mean())
    rows = []
    for engine in dict.fromkeys((REFERENCE, *[e for e in engines if e in FILE_ENGINES])):
        logits = reference if engine == REFERENCE else engine_logits(engine, path, images)
        accuracy = float((logits.argmax(1) == labels).float().mean())
        row: dict[str, Any] = {"engine": engine, "precision": ENGINE_PRECISION[engine], "images": len(labels),
                               "test_acc": accuracy, "correct": int((logits.argmax(1) == labels).sum())}
        try:
            parity = compare_logits(reference, logits, labels, path, max_abs_diff=None if quantized else 1e-3,
                                    min_agreement=0.95 if quantized else 0.999)
            row.update(top1_agreement=parity.top1_agreement, max_abs_diff=parity.max_abs_diff)
            faithful = abs(accuracy - reference_acc) <= ACCURACY_TOLERANCE
            row["note"] = "" if faithful else f"accuracy {accuracy:.2%} against {reference_acc:.2%} for {REFERENCE}"
        except ExportError as exc:
            agree = float((reference.argmax(1) == logits.argmax(1)).float().mean())
            row.update(top1_agreement=agree, max_abs_diff=float((reference - logits).abs().max()))
            faithful, row["note"] = False, f"parity with {REFERENCE} failed: {str(exc).split(': ', 1)[-1]}"
        row["faithful"] = faithful
        rows.append(row)
    return rows


def fastest_faithful(engines: list[dict[str, Any]], latency: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The engine with the lowest median latency at the largest batch timed, among the faithful ones."""
    faithful = {row["engine"] for row in engines if row["faithful"]}
    timed = [t for t in latency if t["engine"] in faithful]
    if not timed:
        return None
    largest = max(t["batch_size"] for t in timed)
    return min((t for t in timed if t["batch_size"] == largest), key=lambda t: t["median_ms"])
