"""LiteRT (TensorFlow Lite) flatbuffers: conversion with litert-torch and inference with ai-edge-litert.

LiteRT is what phones and microcontrollers run (TFLite Micro with CMSIS-NN kernels on Arm Cortex-M). Two
forms are written, both with a static batch of one image, as a microcontroller runs them:

- float32: the network as it is;
- full-integer int8: weights int8 per output channel (symmetric), activations int8 per tensor, and int8
  input and output tensors, calibrated on training images through PyTorch's PT2E flow (litert-torch's
  quantizer), so that the file runs on integer-only hardware. The runner here quantizes the normalised
  input with the file's own scale and zero point and dequantizes the logits.

litert-torch and ai-edge-litert are an optional extra (``pip install 'slimbench[litert]'``, about 2 GB with
JAX): everything here imports them lazily and says so in one line when they are missing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimbench.artifact import atomic_write
from slimbench.errors import ExportError, SlimbenchError

EXTRA_HINT = "pip install 'slimbench[litert]'"


def litert_available() -> bool:
    """Whether both halves are installed: the converter (litert-torch) and the interpreter (ai-edge-litert)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError:
        return False
    return True


def export_tflite(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (3, 32, 32),
                  calibration: torch.Tensor | None = None) -> Path:
    """Write ``model`` as a .tflite file for batch-1 inference; atomic.

    ``calibration``: normalised float images [N, C, H, W] from the training split. Given, the file is
    full-integer int8 with activation ranges observed on them; None, it is float32.
    """
    litert_torch = _import_converter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    example = (torch.zeros(1, *input_shape),)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_converter():
            warnings.simplefilter("ignore")
            if calibration is None:
                edge_model = litert_torch.convert(model, example)
            else:
                edge_model = _convert_int8(model, example, calibration)
            edge_model.export(tmp)
        atomic_write(path, Path(tmp).read_bytes())  # the converter writes the file its own way: not atomic
    except Exception as exc:
        if isinstance(exc, ExportError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"LiteRT conversion of {type(model).__name__} failed: {first}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _import_converter() -> Any:
    """litert-torch, imported with its start-up chatter (TensorFlow and absl log lines, torchao's optional CUDA
    kernels failing to load) kept off the terminal."""
    try:
        with _quiet_converter():
            import litert_torch
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except ImportError:
        raise ExportError(f"the tflite format needs litert-torch: {EXTRA_HINT}") from None
    return litert_torch


def _convert_int8(model: nn.Module, example: tuple[torch.Tensor], calibration: torch.Tensor) -> Any:
    """PT2E: export, insert observers, run the calibration images one at a time (the graph is batch-1), convert."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = torch.export.export(model, example).module()
    graph = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
    for image in calibration.float():
        graph(image[None])
    graph = convert_pt2e(graph, fold_quantize=False)
    return litert_torch.convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))


class _quiet_converter:
    """The converter prints progress lines and MLIR diagnostics on stdout/stderr at file-descriptor level;
    they are silenced unless the conversion fails (then the exception carries the message)."""

    def __enter__(self) -> None:
        self._saved = [os.dup(1), os.dup(2)]
        self._null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(self._null, fd)

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()  # what Python buffered while silenced goes to /dev/null, not after the restore
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        os.close(self._null)


def _interpreter(path: str | Path, threads: int | None) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise SlimbenchError(f"the litert engine needs ai-edge-litert: {EXTRA_HINT}") from None
    try:
        return Interpreter(model_path=str(path), num_threads=threads or torch.get_num_threads())
    except ValueError as exc:
        raise SlimbenchError(f"{path}: not a LiteRT flatbuffer ({str(exc).splitlines()[0][:120]})") from None


def tflite_io(path: str | Path) -> dict[str, Any]:
    """The input and output of a .tflite file: shape, dtype and (scale, zero point) where quantized."""
    interpreter = _interpreter(path, 1)
    entry, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {"input_shape": [int(d) for d in entry["shape"]], "input_dtype": np.dtype(entry["dtype"]).name,
            "input_quantization": [float(entry["quantization"][0]), int(entry["quantization"][1])],
            "output_dtype": np.dtype(out["dtype"]).name,
            "output_quantization": [float(out["quantization"][0]), int(out["quantization"][1])]}


def litert_runner(path: str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the .tflite file at ``path`` (XNNPACK, ``threads`` threads) on any number of normalised
    float images, returning float32 logits. The file is run at its own static batch (one image), once per image,
    as a device runs it: resizing its input is not safe, since shapes such as a padded shortcut's are baked in
    for that batch. An int8 file gets its input quantized and its output dequantized with the file's own
    parameters, as a device would."""
    interpreter = _interpreter(path, threads)
    with _quiet_converter():  # the XNNPACK delegate announces itself on stderr
        interpreter.allocate_tensors()
    entry, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = int(entry["shape"][0])
    in_dtype = np.dtype(entry["dtype"])
    in_scale, in_zero = entry["quantization"]
    out_scale, out_zero = out["quantization"]
    if in_dtype.kind == "i" and not in_scale:
        raise SlimbenchError(f"{path}: integer input without quantization parameters")
    if in_dtype.kind == "i":
        info = np.iinfo(in_dtype)

    def run(x: np.ndarray) -> np.ndarray:
        if in_dtype.kind == "i":
            x = np.clip(np.rint(x / in_scale + in_zero), info.min, info.max)
        x = np.ascontiguousarray(x, dtype=in_dtype)
        outputs = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            real = len(chunk)
            if real < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), chunk.dtype)])
            interpreter.set_tensor(entry["index"], chunk)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(out["index"])[:real])
        y = np.concatenate(outputs)
        if y.dtype.kind == "i":
            return ((y.astype(np.float32) - out_zero) * out_scale).astype(np.float32)
        return y.astype(np.float32)

    return run
