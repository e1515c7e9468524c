"""LiteRT (TFLite) export and engine: float32 and full-integer int8 files, proven against PyTorch, run by the
interpreter a device uses, and by a predict.py that needs neither torch nor slimbench."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("litert_torch", reason="the litert extra is not installed (pip install 'slimbench[litert]')")

from slimbench.artifact import Artifact, load_model, read_sidecar, save_artifact
from slimbench.cli import app
from slimbench.data import normalize
from slimbench.errors import CompressionError, ExportError, SlimbenchError
from slimbench.export import export
from slimbench.measure import measure
from slimbench.models import build_model
from slimbench.runtimes.litert import export_tflite, litert_runner, tflite_io
from zoo import ZOO, zoo_id


def _litert_logits(path, images):
    return litert_runner(path)(normalize(images, channels_last=False).numpy())


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, trained, synthetic):
    return export(trained, tmp_path_factory.mktemp("tflite") / "e", format="tflite", precision="int8",
                  dataset=synthetic, commands=["slimbench export x --format tflite --int8"])


def test_int8_file_is_full_integer_and_records_its_own_accuracy(int8_export, trained, synthetic):
    path = int8_export.path
    assert path.name == "model.int8.tflite"
    io = tflite_io(path)
    assert io["input_dtype"] == "int8" and io["output_dtype"] == "int8" and io["input_shape"] == [1, 3, 32, 32]
    assert io["input_quantization"][0] > 0
    sidecar = read_sidecar(path)
    assert sidecar["quant"]["mode"] == "int8" and sidecar["quant"]["format"] == "tflite-int8"
    metrics = sidecar["metrics"]
    # the accuracy recorded is the file's, run here again through the interpreter on every test image
    logits = _litert_logits(path, synthetic.test_x)
    assert metrics["test_correct"] == int((logits.argmax(1) == synthetic.test_y.numpy()).sum())
    assert metrics["test_images"] == len(synthetic.test_y) and metrics["val_images"] == 64
    model, artifact = load_model(trained)
    assert metrics["float_test_acc"] == artifact.metrics["test_acc"]
    with torch.no_grad():
        reference = model.eval()(normalize(synthetic.test_x, channels_last=False)).numpy()
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.95
    # int8 weights: a quarter of the float file, give or take the graph
    assert path.stat().st_size < 0.4 * export_tflite(model, path.parent / "float.tflite").stat().st_size
    assert int8_export.parity["decided_agreement"] >= 0.95


def test_int8_card_and_measure(int8_export):
    card = int8_export.card.read_text()
    for needle in ("input int8 [1, 3, 32, 32]", "zero point", "| litert | as exported |", "pytorch-eager",
                   "pip install numpy ai-edge-litert", "slimbench export x --format tflite --int8",
                   "For a microcontroller: flash", "at 8 bits, largest at"):
        assert needle in card, needle
    report = measure(int8_export.path, latency=True, batch_sizes=(1,), repeats=3)
    assert {t["engine"] for t in report["latency"]} == {"pytorch-eager", "litert"}  # never a stand-in ONNX file
    assert report["file_bytes"] == int8_export.path.stat().st_size
    assert report["recorded_accuracy"]["test_acc"] == read_sidecar(int8_export.path)["metrics"]["test_acc"]
    assert report["quant"]["weight_bits"] == 8 and report["memory"]["activation_bits"] == 8


_WITHOUT_TORCH = """
import runpy, sys
for name in ("torch", "slimbench", "litert_torch"):  # importing any of them now fails: the script must not need them
    sys.modules[name] = None
sys.argv = ["predict.py", *sys.argv[2:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_predict_script_quantizes_its_input_without_torch(int8_export, synthetic, tmp_path):
    script = int8_export.path.parent / "predict.py"
    images = synthetic.test_x[:24]
    np.save(tmp_path / "images.npy", images.permute(0, 2, 3, 1).numpy())
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH.format(script=str(script)), "-",
                          str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = [line.split(" ", 1)[1] for line in run.stdout.splitlines()]
    expected = _litert_logits(int8_export.path, images).argmax(1)
    assert printed == [synthetic.classes[i] for i in expected]


def test_float_file_matches_pytorch(tmp_path, trained, synthetic):
    result = export(trained, tmp_path / "f", format="tflite", dataset=synthetic, latency=False)
    assert result.path.name == "model.tflite" and result.parity["top1_agreement"] == 1.0
    assert result.parity["max_abs_diff"] < 1e-3
    model, _ = load_model(trained)
    with torch.no_grad():
        reference = model.eval()(normalize(synthetic.test_x, channels_last=False))
    accuracy = float((reference.argmax(1) == synthetic.test_y).float().mean())
    assert read_sidecar(result.path)["metrics"]["test_acc"] == pytest.approx(accuracy)
    assert tflite_io(result.path)["input_dtype"] == "float32"


@pytest.mark.parametrize("spec", ZOO, ids=zoo_id)
def test_every_zoo_model_converts_with_parity(tmp_path, spec, synthetic):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    path = export_tflite(model, tmp_path / "m.tflite")
    with torch.no_grad():
        reference = model(normalize(synthetic.test_x[:8], channels_last=False)).numpy()
    exported = _litert_logits(path, synthetic.test_x[:8])
    assert np.abs(exported - reference).max() <= 1e-3 * max(1.0, np.abs(reference).max())


def test_pruned_model_exports_int8(tmp_path, synthetic):
    from slimbench.compress import PruneConfig, prune

    spec = {"model": "resnet20", "width": 0.5}
    save_artifact(Artifact.from_model(spec, build_model(spec)), tmp_path / "p.pt")
    pruned = prune(tmp_path / "p.pt", PruneConfig(ratio=0.3, target="channels"), run_dir=tmp_path / "pr",
                   progress=False)
    result = export(pruned.model_path, tmp_path / "e", format="tflite", dataset=synthetic, latency=False)
    assert read_sidecar(result.path)["structure"] and result.parity["top1_agreement"] == 1.0


def test_bad_files_get_one_line_errors(tmp_path, int8_export):
    not_a_model = tmp_path / "x.tflite"
    not_a_model.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(SlimbenchError, match="not a LiteRT flatbuffer"):
        litert_runner(not_a_model)
    tampered = tmp_path / "t" / int8_export.path.name
    tampered.parent.mkdir()
    content = bytearray(int8_export.path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one weight byte changed
    tampered.write_bytes(bytes(content))
    (tampered.parent / "model.int8.json").write_bytes((int8_export.path.parent / "model.int8.json").read_bytes())
    with pytest.raises(CompressionError, match="does not match the hash"):
        measure(tampered)
    with pytest.raises(ExportError, match="tflite export writes fp32, int8 only, not fp16"):
        export(int8_export.path.parent / "missing.pt", tmp_path / "h", format="tflite", precision="fp16")


def test_cli_export_tflite(tmp_path, trained):
    # the trained model's lineage names the synthetic dataset, so the CLI rebuilds it without any flag
    result = CliRunner().invoke(app, ["export", str(trained), "--format", "tflite", "--int8", "--out",
                                      str(tmp_path / "c"), "--no-latency"])
    assert result.exit_code == 0, result.output
    assert "LiteRT vs PyTorch" in result.output and "LiteRT accuracy of the file: test" in result.output
    assert (tmp_path / "c" / "model.int8.tflite").is_file() and (tmp_path / "c" / "predict.py").is_file()


def test_measure_times_litert_for_a_checkpoint(trained):
    report = measure(trained, latency=True, batch_sizes=(1, 2), engines=("litert",), repeats=3)
    timed = [(t["engine"], t["batch_size"]) for t in report["latency"]]
    assert timed == [("litert", 1), ("litert", 2)] and all(t["median_ms"] > 0 for t in report["latency"])


def test_a_study_row_of_a_tflite_export_reads_the_file(tmp_path, synthetic):
    """The row is the int8 file's: its bits from the sidecar, its accuracy as LiteRT ran it, not the parent's."""
    from slimbench.study import Study, run_study

    study = Study.model_validate({"name": "tiny", "data": {"name": "synthetic"}, "experiments": [
        {"name": "resnet8", "stages": [{"train": {"model": {"model": "resnet8", "width": 0.5}, "epochs": 1,
                                                  "batch_size": 64, "data": {"val_size": 64}}}]},
        {"name": "resnet8-int8", "from": "resnet8",
         "stages": [{"export": {"format": "tflite", "precision": "int8", "parity_images": 64, "latency": False}}]}]})
    rows = {row["experiment"]: row for row in run_study(study, tmp_path / "s", dataset=synthetic, progress=False,
                                                        log=lambda _: None)}
    row = rows["resnet8-int8"]
    assert row["model_path"].endswith("model.int8.tflite") and row["qw"] == 8 and row["qa"] == 8
    assert row["size_bytes"] == row["params"]
    metrics = read_sidecar(row["model_path"])["metrics"]
    assert row["test_acc"] == metrics["test_acc"] and row["val_acc"] == metrics["val_acc"]
    assert rows["resnet8"]["qw"] == 32 and rows["resnet8"]["score"] > 3 * row["score"]


def test_a_low_bit_qat_model_exports_at_eight_bits_and_says_so(tmp_path, trained, synthetic):
    from slimbench.compress import QuantizeConfig, quantize

    w4a4 = quantize(trained, QuantizeConfig(mode="qat", finetune=None, calibration_size=64), tmp_path / "q",
                    dataset=synthetic, progress=False)
    with pytest.raises(ExportError, match="exports at 8 bits"):
        export(w4a4.path, tmp_path / "f", format="tflite", dataset=synthetic, latency=False)
    result = export(w4a4.path, tmp_path / "e", format="tflite", precision="int8", dataset=synthetic, latency=False)
    quant = read_sidecar(result.path)["quant"]
    # the QAT model's effective bits (its first and last layers are 8-bit), recorded; the file's are 8
    assert quant["weight_bits"] == 8 and 4 < quant["from_lowbit"]["weight_bits"] < 5
    assert "exported at 8 bits" in quant["note"] and "exported at 8 bits" in result.card.read_text()
    # the float twin carries the 4-bit grid: at most 16 distinct values per output channel
    from slimbench.export.tflite import dequantized_twin

    model, artifact = load_model(w4a4.path)
    twin = dequantized_twin(model, artifact)
    weight = twin.layer2[0].conv1.weight
    assert all(len(torch.unique(channel)) <= 16 for channel in weight)


def test_doctor_reads_a_tflite_file_at_its_bits(int8_export):
    from slimbench.measure import diagnose_target

    _, findings = diagnose_target(int8_export.path, budget="ram=1KB,flash=1MB")
    by_check = {f.check: f for f in findings}
    assert by_check["ram"].severity == "error" and "8-bit activations" in by_check["ram"].message
    assert "batchnorm" not in by_check  # the file's shapes are checked, not a stand-in's fresh weights
