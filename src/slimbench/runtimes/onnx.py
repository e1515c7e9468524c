"""ONNX export with a parity check against PyTorch on real images.

The TorchScript-based exporter (``dynamo=False``) is used: for these convolutional networks it gives the
same graph as the torch.export-based one in a few seconds instead of about a minute per model on a laptop
CPU. ``exporter="dynamo"`` selects the newer one.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimbench.artifact import publish
from slimbench.data import normalize
from slimbench.errors import ExportError

INPUT_NAME, OUTPUT_NAME = "images", "logits"
DEFAULT_OPSET = 17  # well covered by ONNX Runtime's CPU provider and its quantization tools


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (3, 32, 32),
                dynamic_batch: bool = True, batch_size: int = 1, opset: int = DEFAULT_OPSET, half: bool = False,
                exporter: str = "torchscript") -> Path:
    """Write ``model`` (eval mode, float32 or float16) as ONNX, checked by ``onnx.checker``; atomic."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(torch.float16 if half else torch.float32)
    example = torch.zeros(batch_size, *input_shape, dtype=torch.float16 if half else torch.float32)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
            if is_lowbit_model(model):
                _export_lowbit(model, example, tmp, dynamic_batch, kwargs)
            elif exporter == "dynamo":
                if dynamic_batch:
                    kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
                torch.onnx.export(model, (example,), tmp, dynamo=True, **kwargs)
            else:
                if dynamic_batch:
                    kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                torch.onnx.export(model, (example,), tmp, dynamo=False, do_constant_folding=True, **kwargs)
        onnx.checker.check_model(onnx.load(tmp))
        publish(tmp, path)  # mkstemp made it private; an exported model is for sharing
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {str(exc).splitlines()[0][:200]}") from None
    finally:
        model.float()
    return path


def is_lowbit_model(model: nn.Module) -> bool:
    from slimbench.models.lowbit import is_lowbit

    return any(is_lowbit(module) for module in model.modules())


def _export_lowbit(model: nn.Module, example: torch.Tensor, path: str, dynamic_batch: bool,
                   kwargs: dict[str, Any]) -> None:
    """Brevitas QAT layers as QCDQ: int8 weight initializers (their low-bit grid) + DequantizeLinear, inputs as
    QuantizeLinear + Clip (to 2^b levels) + DequantizeLinear, which ONNX Runtime runs as written."""
    from brevitas.export import export_onnx_qcdq

    if example.dtype == torch.float16:
        raise ExportError("a low-bit QAT model exports at its own bit widths, not as float16")
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    # the TorchScript-based path stores weights as integers; Brevitas's dynamo path keeps them float. Without
    # keep_initializers_as_inputs=False every batch-norm tensor is also a graph input, which ONNX Runtime
    # warns about once per tensor and cannot constant-fold
    export_onnx_qcdq(model, args=example, export_path=path, dynamo=False, keep_initializers_as_inputs=False, **kwargs)


def onnx_session(path: str | Path, threads: int | None = None):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session with all graph optimisations and a fixed thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass
class Parity:
    images: int
    top1_agreement: float  # share of images where the exported model and PyTorch predict the same class
    max_abs_diff: float  # largest logit difference
    onnx_accuracy: float | None = None
    torch_accuracy: float | None = None
    # quantized exports: judged on the images whose float prediction is clear of the export's own noise
    noise: float | None = None  # 90th percentile over images of the largest logit error
    relative_noise: float | None = None  # that noise over the mean spread (std) of the float logits
    decided_images: int | None = None  # images whose float top-1 margin exceeds twice the noise
    decided_agreement: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def check_parity(model: nn.Module, onnx_path: str | Path, images: torch.Tensor, labels: torch.Tensor | None = None,
                 max_abs_diff: float | None = 1e-3, min_agreement: float = 0.999, batch_size: int = 250) -> Parity:
    """Run the ONNX file with ONNX Runtime and ``model`` with PyTorch on the same uint8 images and compare.

    Raises :class:`ExportError` when they disagree beyond the tolerances: ``max_abs_diff`` is relative to the
    largest logit when that exceeds 1; ``None`` checks top-1 only, for quantized models whose logits differ by
    design.
    """
    session = onnx_session(onnx_path)
    declared = session.get_inputs()[0]
    expected = declared.shape[1:]
    if list(images.shape[1:]) != list(expected):
        raise ExportError(f"{onnx_path} expects images shaped [N, {', '.join(map(str, expected))}], "
                          f"got {list(images.shape)}")
    dtype = np.float16 if "float16" in declared.type else np.float32
    if isinstance(declared.shape[0], int):  # a fixed batch size: whole batches only
        batch_size = declared.shape[0]
        images = images[: len(images) // batch_size * batch_size]
        labels = labels[: len(images)] if labels is not None else None
    model = model.eval().float()
    torch_logits, onnx_logits = [], []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size], channels_last=False)
        torch_logits.append(model(x).float())
        onnx_logits.append(torch.from_numpy(session.run(None, {declared.name: x.numpy().astype(dtype)})[0]).float())
    return compare_logits(torch.cat(torch_logits), torch.cat(onnx_logits), labels, onnx_path, max_abs_diff,
                          min_agreement)


# the committed int8 ResNet-20: 0.13; the same file with one weight scale doubled: 2.1
MAX_RELATIVE_NOISE = 0.3


def compare_logits(reference: torch.Tensor, exported: torch.Tensor, labels: torch.Tensor | None, path: str | Path,
                   max_abs_diff: float | None, min_agreement: float) -> Parity:
    """Top-1 agreement and largest logit difference of an exported model against PyTorch; raises beyond tolerance.

    ``max_abs_diff`` is relative to the largest logit when that exceeds 1 (float rounding grows with the
    logits of untrained deep nets). ``None`` is for quantized exports, whose logits differ by design: they must
    agree on the images whose float prediction is clear of the export's noise (``min_agreement`` of them), and
    that noise must stay small against the spread of the logits. An untrained or barely trained model has
    near-tied logits that any rounding reorders: plain top-1 agreement would judge the noise, not the export.
    """
    agree = reference.argmax(1) == exported.argmax(1)
    result = Parity(images=len(reference), top1_agreement=float(agree.float().mean()),
                    max_abs_diff=float((reference - exported).abs().max()))
    if labels is not None:
        result.torch_accuracy = float((reference.argmax(1) == labels).float().mean())
        result.onnx_accuracy = float((exported.argmax(1) == labels).float().mean())
    if max_abs_diff is None:
        noise = float(torch.quantile((reference - exported).abs().amax(1), 0.9))
        spread = float(reference.std(1).mean()) if reference.shape[1] > 1 else 1.0
        top2 = reference.topk(min(2, reference.shape[1]), dim=1).values
        decided = (top2[:, 0] - top2[:, -1]) > 2 * noise
        result.noise, result.relative_noise = noise, noise / max(spread, 1e-12)
        result.decided_images = int(decided.sum())
        result.decided_agreement = float(agree[decided].float().mean()) if decided.any() else 1.0
        if result.relative_noise > MAX_RELATIVE_NOISE or result.decided_agreement < min_agreement:
            clear = (f"top-1 agreement {result.decided_agreement:.2%} on the {result.decided_images} images clear of "
                     f"its noise (need {min_agreement:.1%})" if result.decided_images else "no image clear of its noise")
            raise ExportError(
                f"{path} does not behave like the PyTorch model: {clear}, logit noise "
                f"{result.relative_noise:.2f} of the logits' spread (limit {MAX_RELATIVE_NOISE})")
        return result
    allowed = max_abs_diff * max(1.0, float(reference.abs().max()))
    if result.top1_agreement < min_agreement or result.max_abs_diff > allowed:
        raise ExportError(
            f"{path} does not behave like the PyTorch model: top-1 agreement {result.top1_agreement:.2%} "
            f"(need {min_agreement:.1%}), max logit difference {result.max_abs_diff:.3g} (tolerance {allowed:.3g})"
        )
    return result
