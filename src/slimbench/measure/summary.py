"""``measure``: one report of a model artifact (or a zoo model with fresh weights)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from slimbench.artifact import load_model
from slimbench.measure.counts import count_model, storage_bytes
from slimbench.measure.latency import measure_latency
from slimbench.models import build_model, normalize_spec


def measure(model_or_checkpoint: str | Path, latency: bool = False, batch_sizes: tuple[int, ...] = (1, 64),
            repeats: int = 50) -> dict[str, Any]:
    """Parameters, MACs (per layer too), size at fp32/fp16/int8, and optionally CPU latency.

    A path to an artifact is measured as saved; a model name (``resnet20``) is built with fresh weights.
    """
    path = Path(model_or_checkpoint)
    if path.exists():
        model, artifact = load_model(path)
        spec, source = artifact.spec, str(path)
    else:
        spec = normalize_spec({"model": str(model_or_checkpoint)})
        model, source = build_model(spec).eval(), f"{spec['model']} (fresh weights)"
    counts = count_model(model)
    report: dict[str, Any] = {
        "source": source,
        "spec": spec,
        "rule": counts.rule,
        "input_shape": counts.input_shape,
        "params": counts.params,
        "trainable_params": counts.trainable_params,
        "nonzero_params": counts.nonzero_params,
        "macs": counts.macs,
        "size_bytes": {f"{bits}-bit": storage_bytes(counts.params, bits) for bits in (32, 16, 8)},
        "layers": [asdict(layer) for layer in counts.layers],
    }
    if latency:
        report["latency"] = [asdict(measure_latency(model, b, repeats=repeats)) for b in batch_sizes]
    return report
