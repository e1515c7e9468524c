"""The quantize stage: fp16/bf16 artifacts, and int8 by ONNX Runtime static quantization (QDQ).

fp16/bf16 store every floating tensor at half width (the file halves) and record the dtype in ``quant``;
the rebuilt model runs in that dtype and ``evaluate`` casts its inputs, so the brief's float16 crash
cannot happen. int8 exports the float model to ONNX, fuses batch norm into the convolutions (ONNX Runtime's
pre-processing), calibrates activation ranges on training images (never validation or test images), and
writes a QDQ model with per-channel int8 weights that ONNX Runtime runs with integer kernels. A JSON
sidecar carries the quantization recipe, lineage and measurements, so ``score`` and ``measure`` read the
int8 model's bits from the file rather than from memory.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field, model_validator

from slimbench.artifact import Artifact, atomic_write, build_from_artifact, lineage_step, load_artifact, load_model, write_sidecar
from slimbench.artifact import save_artifact as save_torch_artifact
from slimbench.compress.calibration import calibration_indices, dataset_for, validation_images
from slimbench.config import StrictModel
from slimbench.data import ImageDataset, normalize
from slimbench.errors import CompressionError
from slimbench.hardware import host
from slimbench.measure import count_model

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class LayerBits(StrictModel):
    weight_bits: int | None = Field(None, ge=2, le=8)
    activation_bits: int | None = Field(None, ge=2, le=8)


WeightStepInit = Literal["max", "mse"]
ActivationStepInit = Literal["percentile", "mse"]


def check_step_inits(weight_step_init: str, activation_step_init: str) -> None:
    """Refuse a step start that no QAT run knows, for callers that take the names outside a QuantizeConfig."""
    for name, value, allowed in (("weight_step_init", weight_step_init, get_args(WeightStepInit)),
                                 ("activation_step_init", activation_step_init, get_args(ActivationStepInit))):
        if value not in allowed:
            raise CompressionError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


class QuantizeConfig(StrictModel):
    mode: Literal["fp16", "bf16", "int8", "qat"] = "int8"
    calibration_size: int = Field(512, gt=0)  # training images used to calibrate activation ranges (int8)
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=90, le=100)  # calibration: percentile
    per_channel: bool = True  # one weight scale per output channel
    activations: Literal["u8", "s8"] = "u8"
    # ONNX Runtime advises 7-bit weights on x86 CPUs without VNNI, whose u8*s8 kernels can saturate;
    # "auto" follows that advice for the CPU the model is quantized on.
    reduce_range: Literal["auto"] | bool = "auto"
    parity_images: int = Field(1000, gt=0)  # test images compared between int8 ONNX Runtime and float PyTorch
    min_agreement: float = Field(0.95, gt=0, le=1)  # top-1 agreement below this fails the quantization
    seed: int = 0
    # qat: low-bit quantization-aware training with Brevitas (see compress/qat.py)
    weight_bits: int = Field(4, ge=2, le=8)
    activation_bits: int = Field(4, ge=2, le=8)  # bits of every quantized layer's inputs
    first_last_bits: int | None = Field(8, ge=2, le=8)  # first and last layer (None: like the others)
    layer_bits: dict[str, LayerBits] = {}  # per-layer overrides: name pattern (fnmatch) -> bits; later wins
    float_layers: list[str] = []  # name patterns of layers left in float (counted at 32 bits)
    finetune: dict[str, Any] | None = {"epochs": 10}  # trainer overrides; None: calibrate only (low-bit PTQ)
    distill_from_parent: bool = False  # distil from the parent (the float model, or the QAT model at more bits)
    # each channel's first weight step: its largest |w| (every weight on the grid; at 2-3 bits most round to 0)
    # or the step that minimises the squared rounding error of that channel's weights
    weight_step_init: WeightStepInit = "max"
    # each input's first step: Brevitas's (the 99.999th percentile of the calibration inputs over the grid's
    # top level) or the step that rounds and clips those inputs with the least squared error
    activation_step_init: ActivationStepInit = "percentile"
    # progressive QAT from a QAT parent written before artifacts recorded their pruning masks, whose zeros mix
    # pruned weights with grid levels: the float ancestor in its lineage whose zeros are the masks
    masks_from: str | None = None

    @model_validator(mode="after")
    def _eager_qat(self) -> QuantizeConfig:
        if self.mode == "qat" and (self.finetune or {}).get("compile"):
            # measured with torch 2.13 and Brevitas 0.13, in fp32 and in bf16: Dynamo breaks the graph at
            # Brevitas's quantizers and recompiles with the spatial sizes dynamic, and Inductor then fails to
            # lower the convolutions' backward (ValueRangeError); benchmarks/qat_step.py --compiled times the
            # static-shape variant. Better said before calibration.
            raise ValueError("finetune.compile: torch.compile cannot train Brevitas's low-bit layers (at their "
                             "graph breaks Dynamo makes the image size dynamic and Inductor fails on the "
                             "convolution backward): QAT trains eagerly, leave compile unset")
        return self


@dataclass
class QuantizeResult:
    path: Path  # model.pt (fp16/bf16) or model.int8.onnx
    metrics: dict[str, Any]


def _reduce_range(config: QuantizeConfig) -> bool:
    return not host().int8_dot if config.reduce_range == "auto" else bool(config.reduce_range)


def half_artifact(parent: Artifact, mode: str) -> Artifact:
    """The same model with every floating tensor stored as fp16 or bf16."""
    dtype = HALF_DTYPES[mode]
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in parent.state.items()}
    bits = 16
    quant = {"mode": mode, "dtype": str(dtype).replace("torch.", ""), "weight_bits": bits, "activation_bits": bits}
    return Artifact(spec=parent.spec, state=state, structure=parent.structure, quant=quant,
                    lineage=list(parent.lineage), metrics={}, masks=parent.masks)


def quantize_step(config: QuantizeConfig, parent: Artifact, metrics: dict[str, Any]) -> dict[str, Any]:
    return lineage_step("quantize", config.model_dump(mode="json"), parent.digest, metrics)


def _calibration_images(dataset: ImageDataset, parent: Artifact, config: QuantizeConfig) -> torch.Tensor:
    return dataset.train_x[calibration_indices(dataset, parent, config.calibration_size, config.seed)]


def quantize_int8_onnx(float_onnx: str | Path, out_path: str | Path, calibration: torch.Tensor,
                       config: QuantizeConfig) -> Path:
    """ONNX Runtime static quantization (QDQ) of a float ONNX model, calibrated on uint8 ``calibration`` images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, images: torch.Tensor, input_name: str, batch_size: int = 64) -> None:
            self.batches = [normalize(images[i:i + batch_size], channels_last=False).numpy().astype(np.float32)
                            for i in range(0, len(images), batch_size)]
            self.input_name = input_name
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(self.batches):
                return None
            self.position += 1
            return {self.input_name: self.batches[self.position - 1]}

    import onnx

    out_path = Path(out_path)
    input_name = onnx.load(str(float_onnx)).graph.input[0].name
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    reduce_range = _reduce_range(config)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_onnx), str(prepared), skip_symbolic_shape=True)  # folds BN into convs
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(staged), Reader(calibration, input_name), quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8 if config.activations == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=methods[config.calibration],
            extra_options={"CalibPercentile": config.percentile, "ActivationSymmetric": config.activations == "s8"},
        )
        atomic_write(out_path, staged.read_bytes())
    return out_path


def quantize(checkpoint: str | Path, config: QuantizeConfig, out_dir: str | Path,
             dataset: ImageDataset | None = None, progress: bool = True) -> QuantizeResult:
    """Quantize a model artifact; fp16/bf16/qat give ``model.pt``, int8 gives ``model.int8.onnx`` and its sidecar."""
    from slimbench.measure.accuracy import evaluate
    from slimbench.runtimes.onnx import check_parity, export_onnx

    if config.mode == "qat":
        from slimbench.compress.qat import quantize_aware_training

        return quantize_aware_training(checkpoint, config, out_dir, dataset=dataset, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parent = load_artifact(checkpoint)
    if parent.quant:
        raise CompressionError(f"{checkpoint} is already quantized ({parent.quant.get('mode')}); quantize its float parent")
    model = build_from_artifact(parent, checkpoint).eval()
    data = dataset_for(parent, dataset)
    test_x, test_y = data.test_x, data.test_y
    input_shape = tuple(test_x.shape[1:])
    counts = count_model(model, input_shape)
    float_eval = evaluate(model, test_x, test_y, data.num_classes, channels_last=False)
    validation = validation_images(data, parent)

    def own_and_float_val(val_acc: float | None) -> dict[str, Any]:
        # the parent's validation figure is the float model's: the quantized model's own replaces it
        return {} if val_acc is None else {"val_acc": val_acc, "float_val_acc": parent.metrics.get("val_acc")}

    if config.mode in HALF_DTYPES:
        artifact = half_artifact(parent, config.mode)
        path = out_dir / "model.pt"
        save_torch_artifact(artifact, path)  # saved first so the rebuilt model is what is evaluated
        half_model, _ = load_model(path)
        half_eval = evaluate(half_model, test_x, test_y, data.num_classes, channels_last=False)
        half_val = (None if validation is None else
                    evaluate(half_model, *validation, data.num_classes, channels_last=False).accuracy)
        metrics = {"mode": config.mode, **own_and_float_val(half_val),
                   "test_acc": half_eval.accuracy, "float_test_acc": float_eval.accuracy,
                   "accuracy_drop": float_eval.accuracy - half_eval.accuracy, "file_bytes": path.stat().st_size,
                   "float_file_bytes": Path(checkpoint).stat().st_size, "params": counts.params, "macs": counts.macs}
        artifact.lineage.append(quantize_step(config, parent, metrics))
        artifact.metrics = {**parent.metrics, **metrics}
        save_torch_artifact(artifact, path)
        atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
        return QuantizeResult(path, metrics)

    float_path = export_onnx(model, out_dir / "model.float.onnx", input_shape)
    int8_path = quantize_int8_onnx(float_path, out_dir / "model.int8.onnx",
                                   _calibration_images(data, parent, config), config)
    count = min(config.parity_images, len(test_x))
    parity = check_parity(model, int8_path, test_x[:count], test_y[:count], max_abs_diff=None,
                          min_agreement=config.min_agreement)
    from slimbench.measure.engines import engine_correct

    int8_eval = engine_correct("onnxruntime", int8_path, test_x, test_y) / len(test_y)
    int8_val = None if validation is None else \
        engine_correct("onnxruntime", int8_path, *validation) / len(validation[1])
    reduce_range = _reduce_range(config)
    quant = {"mode": "int8", "format": "onnx-qdq", "weight_bits": 8, "activation_bits": 8,
             "per_channel": config.per_channel, "activations": config.activations, "reduce_range": reduce_range,
             "calibration": config.calibration, "calibration_size": config.calibration_size}
    metrics = {"mode": "int8", **own_and_float_val(int8_val), "test_acc": int8_eval, "float_test_acc": float_eval.accuracy,
               "accuracy_drop": float_eval.accuracy - int8_eval, "parity": parity.as_dict(),
               "file_bytes": int8_path.stat().st_size, "float_file_bytes": float_path.stat().st_size,
               "params": counts.params, "nonzero_params": counts.nonzero_params, "macs": counts.macs}
    write_sidecar(int8_path, parent, quant, [*parent.lineage, quantize_step(config, parent, metrics)], str(checkpoint),
                  metrics)
    atomic_write(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    return QuantizeResult(int8_path, metrics)
