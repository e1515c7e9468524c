"""The ``tflite`` export format: LiteRT flatbuffers for phones and microcontrollers, float32 or full-integer int8.

Every file is run in the LiteRT interpreter against PyTorch on the parity images (the same gate as ONNX), then
on the whole validation and test splits: the accuracy recorded in its sidecar and card is the file's own.
"""

from __future__ import annotations

from typing import Any

import torch

from slimbench.artifact import read_sidecar, write_sidecar
from slimbench.compress.calibration import calibration_indices
from slimbench.compress.quantize import QuantizeConfig
from slimbench.data import normalize
from slimbench.errors import ExportError
from slimbench.export.card import write_model_card
from slimbench.export.stage import (
    ExportFormat,
    ExportJob,
    ExportResult,
    file_accuracies,
    record_network_figures,
    register_format,
    without_split_figures,
)
from slimbench.export.standalone import write_tflite_predict_script
from slimbench.measure import count_model
from slimbench.measure.counts import scored_nonzero
from slimbench.measure.engines import engine_logits
from slimbench.measure.latency import measure_latency, measure_litert_latency
from slimbench.runtimes.litert import export_tflite, tflite_io
from slimbench.runtimes.onnx import compare_logits


def write_tflite(job: ExportJob) -> ExportResult:
    parent, model, data = job.parent, job.model.eval().float(), job.data
    lowbit = (parent.quant or {}).get("mode") == "qat"
    if lowbit and job.precision != "int8":
        raise ExportError(f"{job.checkpoint} is a low-bit QAT model: LiteRT has no kernels for its bits, so it exports "
                          "at 8 bits (--int8), or at its own bits with --format onnx")
    if lowbit:
        model = dequantized_twin(model, parent)
    int8 = job.precision == "int8"
    config = job.options.get("quantize_config") or QuantizeConfig()
    calibration = None
    if int8:
        picked = calibration_indices(data, parent, config.calibration_size, config.seed)
        calibration = normalize(data.train_x[picked], channels_last=False)
    path = export_tflite(model, job.out_dir / ("model.int8.tflite" if int8 else "model.tflite"), job.input_shape,
                         calibration)
    with torch.no_grad():
        reference = model(normalize(job.images, channels_last=False)).float()
    try:
        parity = compare_logits(reference, engine_logits("litert", path, job.images, batch_size=100), job.labels, path,
                                max_abs_diff=None if int8 else 1e-3,
                                min_agreement=config.min_agreement if int8 else 0.999).as_dict()
    except ExportError:
        path.rename(path.with_suffix(".rejected.tflite"))
        raise
    accuracy = file_accuracies(job, "litert", path, batch_size=100)
    quant = ({"mode": "int8", "weight_bits": 8, "activation_bits": 8, "format": "tflite-int8",
              "scheme": "weights symmetric per output channel, activations per tensor, int8 input and output",
              "calibration_size": len(calibration)} if int8 else parent.quant)
    if lowbit:  # stored and run at 8 bits: the score and the card must not claim the QAT bits
        quant = {**quant, "from_lowbit": {k: parent.quant.get(k) for k in ("weight_bits", "activation_bits")},
                 "note": "low-bit QAT model exported at 8 bits: its weights lie on their low-bit grid, stored as "
                         "int8; its activations run at 8 bits instead of its own (LiteRT has no kernels for those)"}
    counts = count_model(model, job.input_shape)
    # the parent's per-split figures are the float model's: the file's own replace them
    metrics = {**without_split_figures(parent.metrics), **accuracy, "parity": parity, "params": counts.params,
               "nonzero_params": scored_nonzero(model, quant, parent.lineage, parent.masks), "macs": counts.macs,
               "io": tflite_io(path)}
    write_sidecar(path, parent, quant, list(parent.lineage), str(job.checkpoint), metrics)
    timings = []
    if job.options.get("latency"):
        timings = [measure_latency(model, 1, job.input_shape, repeats=30),
                   measure_litert_latency(path, 1, job.input_shape, repeats=30)]
    script = write_tflite_predict_script(job.out_dir, path, data.classes, job.input_shape)
    engines = [{"engine": "litert", "precision": "as exported", "images": accuracy["test_images"],
                "test_acc": accuracy["test_acc"], "correct": accuracy["test_correct"], "faithful": True, "note": ""}]
    memory = record_network_figures(path, job.checkpoint, model, parent, job.input_shape)
    card = write_model_card(job.out_dir / "MODEL_CARD.md", path, read_sidecar(path), counts, parity, timings,
                            job.options.get("commands") or [], predict_script=script, engines=engines,
                            runtime="LiteRT", memory=memory)
    return ExportResult(path=path, card=card, parity=parity, extra_files=[script])


def dequantized_twin(model: torch.nn.Module, parent: Any) -> torch.nn.Module:
    """The float network of a low-bit QAT model: each Brevitas layer replaced by a plain one holding its weights
    as quantized (on their low-bit grid), batch norm and the rest as trained. Its input quantizers are left
    out: the int8 file quantizes every activation at 8 bits."""
    from slimbench.measure.memory import float_twin
    from slimbench.models.lowbit import is_lowbit

    twin = float_twin(parent.spec, parent.structure)
    state = {k: v for k, v in model.state_dict().items() if k in twin.state_dict()}
    twin.load_state_dict(state, strict=False)
    layers = dict(twin.named_modules())
    with torch.no_grad():
        for name, module in model.named_modules():
            if is_lowbit(module):
                layers[name].weight.copy_(module.quant_weight().value.detach().float())
                if module.bias is not None:
                    layers[name].bias.copy_(module.bias.detach().float())
    return twin.eval()


register_format(ExportFormat("tflite", ("fp32", "int8"), write_tflite))
