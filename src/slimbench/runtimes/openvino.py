"""OpenVINO as an engine for slimbench's ONNX exports, read as they are, always at a stated precision.

OpenVINO's CPU plugin computes in bf16 by default on CPUs with native bf16 (``INFERENCE_PRECISION_HINT``
reads ``bfloat16`` there): an "fp32" model then runs bf16 arithmetic, faster and not the same model. Here
the precision is always set explicitly: ``f32`` unless ``bf16`` is asked for by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from slimbench.errors import SlimbenchError

PRECISIONS = {"f32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_runner(path: str | Path, batch_size: int, precision: str = "f32",
                    threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the ONNX file at ``path`` on OpenVINO's CPU plugin for batches of ``batch_size``."""
    if precision not in PRECISIONS:
        raise SlimbenchError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        import openvino as ov
    except ImportError:
        raise SlimbenchError("the openvino engine needs OpenVINO: pip install 'slimbench[openvino]'") from None
    import torch

    core = ov.Core()
    model = core.read_model(str(path))
    shape = model.input(0).get_partial_shape()
    shape[0] = batch_size
    model.reshape({model.input(0).get_any_name(): shape})
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": str(threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
    })
    request = compiled.create_infer_request()
    output = compiled.output(0)
    dtype = np.float16 if "f16" in str(model.input(0).get_element_type()) else np.float32

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer({0: x.astype(dtype, copy=False)})[output], dtype=np.float32)

    return run
