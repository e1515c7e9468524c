"""Sidecars: the JSON beside an exported model file (ONNX or LiteRT) carrying its recipe, lineage and measurements,
so that ``score`` and ``measure`` read an exported model's bits and history from the file, checked by hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from slimbench.artifact.core import Artifact, atomic_write
from slimbench.errors import CompressionError

SIDECAR_FORMAT = "slimbench.export-artifact"
# sidecars written before LiteRT joined: the same payload with the file under "onnx" / "onnx_sha256"
_FORMATS = {SIDECAR_FORMAT: ("file", "sha256"), "slimbench.onnx-artifact": ("onnx", "onnx_sha256")}


EXPORTED_SUFFIXES = (".onnx", ".tflite")  # files that carry a sidecar: counts, bits and lineage are read from it


def is_exported_file(path: str | Path) -> bool:
    """An exported model file (ONNX or LiteRT) with a sidecar, rather than a slimbench artifact."""
    return Path(path).suffix in EXPORTED_SUFFIXES


def sidecar_path(exported: str | Path) -> Path:
    return Path(exported).with_suffix(".json")


def write_sidecar(exported: Path, parent: Artifact, quant: dict[str, Any] | None, lineage: list[dict[str, Any]],
                  source: str, metrics: dict[str, Any]) -> Path:
    payload = {"format": SIDECAR_FORMAT, "file": exported.name,
               "sha256": hashlib.sha256(exported.read_bytes()).hexdigest(), "source_checkpoint": source,
               "spec": parent.spec, "structure": parent.structure, "quant": quant, "lineage": lineage, "metrics": metrics}
    path = sidecar_path(exported)
    atomic_write(path, json.dumps(payload, indent=2, default=str).encode())
    return path


def read_sidecar(exported: str | Path) -> dict[str, Any]:
    """The recipe and lineage written beside an exported file, checked against the file's hash."""
    exported = Path(exported)
    path = sidecar_path(exported)
    if not path.is_file():
        raise CompressionError(f"{exported}: no {path.name} beside it (export or quantize with slimbench)")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise CompressionError(f"{path}: not valid JSON") from None
    if payload.get("format") not in _FORMATS:
        raise CompressionError(f"{path}: not a slimbench export sidecar")
    _, hash_key = _FORMATS[payload["format"]]
    if hashlib.sha256(exported.read_bytes()).hexdigest() != payload.get(hash_key):
        raise CompressionError(f"{exported}: does not match the hash in {path.name} (modified or replaced)")
    return payload


def update_sidecar_metrics(exported: str | Path, figures: dict[str, Any]) -> Path:
    """Add ``figures`` to the metrics of a sidecar already written (checked against its file first), atomically."""
    payload = read_sidecar(exported)
    payload["metrics"] = {**(payload.get("metrics") or {}), **figures}
    path = sidecar_path(exported)
    atomic_write(path, json.dumps(payload, indent=2, default=str).encode())
    return path
