"""Engines beside ONNX Runtime (OpenVINO), at stated precisions, with accuracy and parity per engine."""

from __future__ import annotations

import pytest
import torch

from slimbench.measure import engines as engines_module
from slimbench.measure import measure
from slimbench.measure.engines import compare_engines, fastest_faithful

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed")


def test_openvino_runs_an_export_in_f32_and_agrees_with_onnx_runtime(tmp_path, trained, synthetic):
    from slimbench.export import export

    exported = export(trained, tmp_path / "e", dataset=synthetic, latency=False)
    rows = compare_engines(exported.path, synthetic.test_x, synthetic.test_y, ("openvino",), quantized=False)
    reference, ov = rows
    assert (reference["engine"], ov["engine"], ov["precision"]) == ("onnxruntime", "openvino", "f32")
    assert ov["faithful"] and ov["max_abs_diff"] < 1e-3 and ov["correct"] == reference["correct"]
    report = measure(exported.path, latency=True, batch_sizes=(1, 8), repeats=3,
                     engines=("onnxruntime", "openvino"), engine_accuracy=False)
    timed = {(t["engine"], t["precision"], t["batch_size"]) for t in report["latency"]}
    assert timed == {("onnxruntime", "as exported", 1), ("onnxruntime", "as exported", 8),
                     ("openvino", "f32", 1), ("openvino", "f32", 8)}


def test_an_engine_whose_bf16_changes_predictions_is_labelled_not_reported_as_the_model(tmp_path, monkeypatch):
    """Near-tied logits that bf16 rounding reorders: the bf16 engine's row says bf16 and is not faithful, so
    neither its accuracy nor its speed stands for the fp32 model's."""
    labels = torch.tensor([0, 1] * 50)
    reference = torch.zeros(100, 10)
    reference[:, 0] = 1.0
    reference[:, 1] = 1.0 + torch.where(labels == 1, 1e-3, -1e-3)  # right by a thousandth: bf16 cannot tell
    rounded = reference.to(torch.bfloat16).float()

    def fake_logits(engine, path, images, batch_size=500):
        return rounded if engine == "openvino-bf16" else reference

    monkeypatch.setattr(engines_module, "engine_logits", fake_logits)
    rows = compare_engines(tmp_path / "m.onnx", torch.zeros(100, 3, 8, 8, dtype=torch.uint8), labels,
                           ("openvino-bf16",), quantized=False)
    reference_row, bf16 = rows
    assert reference_row["test_acc"] == 1.0 and reference_row["faithful"]
    assert bf16["precision"] == "bf16" and not bf16["faithful"] and bf16["test_acc"] < 1.0
    assert "parity with onnxruntime failed" in bf16["note"]
    latency = [{"engine": "openvino-bf16", "batch_size": 64, "median_ms": 1.0, "precision": "bf16"},
               {"engine": "onnxruntime", "batch_size": 64, "median_ms": 2.0, "precision": "as exported"}]
    assert fastest_faithful(rows, latency)["engine"] == "onnxruntime"  # the faster bf16 engine is not chosen


def test_the_model_card_of_an_export_lists_every_engine_and_the_fastest_faithful(tmp_path, trained, synthetic):
    from slimbench.export import export

    card = export(trained, tmp_path / "e", dataset=synthetic, parity_images=64).card.read_text()
    for needle in ("| onnxruntime | as exported |", "| openvino | f32 |", "| openvino-bf16 | bf16 |",
                   "Fastest faithful engine on this CPU:"):
        assert needle in card, needle


def test_a_model_card_says_when_its_timings_were_taken_on_a_crowded_machine():
    from slimbench.export.card import _latency_rows
    from slimbench.measure.latency import Latency

    def timing(busy: float | None) -> Latency:
        return Latency(batch_size=1, median_ms=1.0, p90_ms=1.0, p99_ms=1.0, images_per_s=1000.0, threads=2,
                       repeats=5, engine="onnxruntime", busy_cores=busy)

    assert not any("busy" in row for row in _latency_rows([timing(None), timing(0.2)]))
    assert "Timed while other processes kept up to 1.8 cores busy" in "\n".join(
        _latency_rows([timing(0.2), timing(1.8)]))
