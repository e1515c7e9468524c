from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from slimbench.artifact import Artifact, load_model, read_sidecar, save_artifact
from slimbench.cli import app
from slimbench.compress import QuantizeConfig, quantize
from slimbench.errors import CompressionError, ExportError
from slimbench.export import check_parity, export, export_onnx
from slimbench.measure import evaluate, measure
from slimbench.models import build_model
from slimbench.score import inputs_from_artifact, load_rule
from zoo import ZOO, zoo_id


@pytest.mark.parametrize("mode", ["fp16", "bf16"])
def test_half_precision_artifact(tmp_path, trained, synthetic, mode):
    result = quantize(trained, QuantizeConfig(mode=mode), tmp_path / mode, dataset=synthetic)
    half, artifact = load_model(result.path)
    assert next(half.parameters()).dtype == (torch.float16 if mode == "fp16" else torch.bfloat16)
    assert artifact.quant["weight_bits"] == 16 and artifact.lineage[-1]["stage"] == "quantize"
    assert result.metrics["file_bytes"] < 0.6 * result.metrics["float_file_bytes"]  # plus lineage and metadata
    parent = load_model(trained)[1]
    assert sum(t.nbytes for t in artifact.state.values()) * 2 == pytest.approx(
        sum(t.nbytes for t in parent.state.values()), rel=0.01)  # tensors exactly halve (but int counters)
    # the brief's crash: evaluation feeds the model inputs of its own dtype, so this simply works
    evaluation = evaluate(half, synthetic.test_x, synthetic.test_y, 10, channels_last=False)
    assert abs(evaluation.accuracy - result.metrics["float_test_acc"]) <= 0.02
    from slimbench.compress.calibration import validation_images

    val = evaluate(half, *validation_images(synthetic, artifact), 10, channels_last=False).accuracy
    assert artifact.metrics["val_acc"] == pytest.approx(val) and "float_val_acc" in artifact.metrics
    full, _ = load_model(trained)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = full(x)
        assert torch.allclose(half(x.to(next(half.parameters()).dtype)).float(), reference,
                              atol=0.05 * reference.abs().max().item())
    with pytest.raises(CompressionError, match="already quantized"):
        quantize(result.path, QuantizeConfig(mode="int8"), tmp_path / "again", dataset=synthetic)


def test_int8_is_really_integer_and_smaller(tmp_path, trained, synthetic):
    result = quantize(trained, QuantizeConfig(mode="int8", calibration_size=256), tmp_path / "q", dataset=synthetic)
    m = result.metrics
    assert m["parity"]["top1_agreement"] >= 0.95
    assert abs(m["accuracy_drop"]) <= 0.05
    graph = onnx.load(str(result.path)).graph
    float_graph = onnx.load(str(result.path.parent / "model.float.onnx")).graph

    def tensor_bytes(g):
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in g.initializer)

    # the weights themselves shrink ~4x; the file less at this tiny size (graph nodes and names weigh ~30 KB)
    assert tensor_bytes(float_graph) / tensor_bytes(graph) > 3.5
    assert m["float_file_bytes"] / m["file_bytes"] > 2
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) >= 10
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 19  # every convolution and the classifier store int8 weights
    # ONNX Runtime turns the QDQ pairs into integer kernels when it loads the model: not fake quantization
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert ops & {"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger"}, ops
    sidecar = read_sidecar(result.path)
    assert sidecar["quant"]["weight_bits"] == 8 and sidecar["lineage"][-1]["stage"] == "quantize"
    inputs, accuracy = inputs_from_artifact(result.path, load_rule("brief"))
    assert (inputs.qw, inputs.qa) == (8, 8) and accuracy == pytest.approx(m["test_acc"])
    # the validation figure is the int8 file's own, on the 64 images the parent was selected on
    from slimbench.compress.calibration import validation_images
    from slimbench.measure.engines import engine_logits

    parent = load_model(trained)[1]
    val_x, val_y = validation_images(synthetic, parent)
    own = float((engine_logits("onnxruntime", result.path, val_x).argmax(1) == val_y).float().mean())
    assert len(val_y) == 64 and sidecar["metrics"]["val_acc"] == pytest.approx(own)
    assert sidecar["metrics"]["float_val_acc"] == parent.metrics["val_acc"]


def test_tampered_onnx_is_refused(tmp_path, trained, synthetic):
    result = export(trained, tmp_path / "e", dataset=synthetic, latency=False)
    model = onnx.load(str(result.path))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    values = onnx.numpy_helper.to_array(weight).copy()
    values *= -1
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ExportError, match="does not behave like the PyTorch model"):
        check_parity(load_model(trained)[0], broken, synthetic.test_x[:64])
    onnx.save(model, str(result.path))  # replaced behind the sidecar's back
    with pytest.raises(CompressionError, match="does not match the hash"):
        read_sidecar(result.path)


def test_export_card_and_side_by_side_latency(tmp_path, trained, synthetic):
    result = export(trained, tmp_path / "e", dataset=synthetic, commands=["slimbench export x"])
    assert result.parity["max_abs_diff"] < 1e-3 and result.parity["top1_agreement"] == 1.0
    card = result.card.read_text()
    for needle in ("Parameters:", "MACs per image", "Score (preset `brief`", "onnxruntime", "pytorch-eager",
                   "| 1 | train |", "slimbench export x"):
        assert needle in card, needle
    report = measure(result.path, latency=True, batch_sizes=(1, 4), repeats=3)
    engines = {(t["engine"], t["batch_size"]) for t in report["latency"]}
    assert engines == {("pytorch-eager", 1), ("onnxruntime", 1), ("pytorch-eager", 4), ("onnxruntime", 4)}
    fp16 = export(trained, tmp_path / "h", precision="fp16", dataset=synthetic, latency=False)
    assert fp16.path.name == "model.fp16.onnx" and fp16.parity["top1_agreement"] >= 0.99




@pytest.mark.parametrize("spec", ZOO, ids=zoo_id)
def test_every_zoo_model_exports_with_parity(tmp_path, spec, synthetic):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    parity = check_parity(model, path, synthetic.test_x[:32], max_abs_diff=1e-3)
    assert parity.top1_agreement == 1.0


def test_fixed_batch_and_wrong_shape(tmp_path, synthetic):
    model = build_model({"model": "resnet20", "width": 0.25}).eval()
    path = export_onnx(model, tmp_path / "b8.onnx", dynamic_batch=False, batch_size=8)
    assert check_parity(model, path, synthetic.test_x[:20]).images == 16
    with pytest.raises(ExportError, match=r"expects images shaped \[N, 3, 32, 32\]"):
        check_parity(model, path, torch.zeros(8, 3, 24, 24, dtype=torch.uint8))


def test_pruned_model_exports(tmp_path, synthetic):
    from slimbench.compress import PruneConfig, prune

    spec = {"model": "resnet20", "width": 0.5}
    save_artifact(Artifact.from_model(spec, build_model(spec)), tmp_path / "p.pt")
    pruned = prune(tmp_path / "p.pt", PruneConfig(ratio=0.3, target="channels"), run_dir=tmp_path / "pr",
                   progress=False)
    result = export(pruned.model_path, tmp_path / "e", dataset=synthetic, latency=False)
    assert result.parity["max_abs_diff"] < 1e-3
    assert read_sidecar(result.path)["structure"]


def test_cli_quantize_and_export(tmp_path, trained):
    # the trained model's lineage names the synthetic dataset, so the CLI rebuilds it without any flag
    runner = CliRunner()
    result = runner.invoke(app, ["quantize", str(trained), "--mode", "fp16", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "smaller" in result.output
    result = runner.invoke(app, ["quantize", str(trained), "--mode", "int8", "--calibration-size", "64",
                                 "--out", str(tmp_path / "q8")])
    assert result.exit_code == 0, result.output
    assert "predict.py: slimbench export" in " ".join(result.output.split())  # where a deployable card comes from
    result = runner.invoke(app, ["export", str(trained), "--out", str(tmp_path / "x"), "--no-latency"])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 100.00%" in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "x" / "model.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["inputs"]["qw"] == 32
    result = runner.invoke(app, ["measure", str(tmp_path / "x" / "model.onnx"), "--latency", "--engines", "tpu"])
    assert result.exit_code != 0


def test_int8_latency_numbers_are_finite(tmp_path, trained, synthetic):
    result = quantize(trained, QuantizeConfig(mode="int8", calibration_size=128, calibration="percentile"),
                      tmp_path / "q", dataset=synthetic)
    report = measure(result.path, latency=True, batch_sizes=(2,), repeats=3, engines=("onnxruntime",))
    assert np.isfinite(report["latency"][0]["median_ms"]) and report["quant"]["mode"] == "int8"


def test_torchscript_export(tmp_path, trained, synthetic):
    result = export(trained, tmp_path / "ts", format="torchscript", dataset=synthetic, latency=False)
    assert result.path.name == "model.torchscript.pt" and result.parity["top1_agreement"] == 1.0
    with pytest.raises(ExportError, match="torchscript export writes fp32 only, not fp16"):
        export(trained, tmp_path / "ts16", format="torchscript", precision="fp16", dataset=synthetic)


_WITHOUT_TORCH = """
import runpy, sys
for name in ("torch", "slimbench"):  # importing either now fails: the script must not need them
    sys.modules[name] = None
sys.argv = ["predict.py", *sys.argv[2:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def _load_predict(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"predict_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predict_script_runs_the_export_without_slimbench_or_torch(tmp_path, trained, synthetic):
    import subprocess
    import sys

    result = export(trained, tmp_path / "e", dataset=synthetic, latency=False)
    script = tmp_path / "e" / "predict.py"
    assert script in result.extra_files and "python predict.py images.npy" in result.card.read_text()
    assert "Not measured (exported with `--no-latency`)" in result.card.read_text()
    images = synthetic.test_x[:40]
    model, _ = load_model(trained)
    with torch.no_grad():
        from slimbench.data import normalize

        reference = model.eval()(normalize(images, channels_last=False))
    np.save(tmp_path / "images.npy", images.permute(0, 2, 3, 1).numpy())  # the script takes [N, H, W, 3] RGB
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH.format(script=str(script)), "-", str(tmp_path / "images.npy")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = [line.split(" ", 1)[1] for line in run.stdout.splitlines()]
    assert printed == [synthetic.classes[i] for i in reference.argmax(1)]
    from PIL import Image

    pictures = [tmp_path / "first.png", tmp_path / "second.png"]  # lossless, at the input size: the same pixels
    for picture, image in zip(pictures, images[:2], strict=True):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(picture)
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH.format(script=str(script)), "-", *map(str, pictures)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{picture} {name}" for picture, name in zip(pictures, printed, strict=False)]

    predict = _load_predict(script)
    assert np.abs(predict.logits(images.permute(0, 2, 3, 1).numpy()) - reference.numpy()).max() < 1e-3
    # the sidecar records the file's own accuracy on every test image: what predict.py gives on them
    every = predict.logits(synthetic.test_x.permute(0, 2, 3, 1).numpy()).argmax(1)
    recorded = read_sidecar(result.path)["metrics"]
    assert recorded["test_correct"] == int((every == synthetic.test_y.numpy()).sum())
    assert recorded["test_images"] == len(synthetic.test_y) and recorded["val_images"] == 64
    with pytest.raises(ValueError, match=r"expected uint8 RGB images shaped \[N, 32, 32, 3\]"):
        predict.logits(images.numpy())  # NCHW instead of NHWC


def test_predict_script_with_a_fixed_batch_and_fp16(tmp_path, trained, synthetic):
    images = synthetic.test_x[:20].permute(0, 2, 3, 1).numpy()
    fixed = export(trained, tmp_path / "b8", dataset=synthetic, dynamic_batch=False, batch_size=8, latency=False)
    half = export(trained, tmp_path / "h", precision="fp16", dataset=synthetic, latency=False)
    dynamic = export(trained, tmp_path / "d", dataset=synthetic, latency=False)
    expected = _load_predict(dynamic.path.parent / "predict.py").logits(images)
    by_eight = _load_predict(fixed.path.parent / "predict.py").logits(images)  # 8 + 8 + 4 padded to 8
    assert read_sidecar(fixed.path)["metrics"]["test_images"] == len(synthetic.test_y)  # run 8 at a time
    assert by_eight.shape == expected.shape and np.abs(by_eight - expected).max() < 1e-4
    in_half = _load_predict(half.path.parent / "predict.py")
    assert (in_half.logits(images).argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert in_half.classify(images[0]) == [synthetic.classes[int(expected[0].argmax())]]


def test_export_formats_are_plug_ins(tmp_path, trained, synthetic):
    """A format registers a name, the precisions it writes and its writer; export() and study stages find it."""
    from slimbench.export import FORMATS, ExportFormat, ExportResult, register_format
    from slimbench.study.stages import ExportConfig

    def write_npz(job):
        path = job.out_dir / "weights.npz"
        np.savez(path, **{k: v.numpy() for k, v in job.model.state_dict().items()})
        return ExportResult(path=path, card=path, parity={"images": len(job.images)}, extra_files=[])

    with pytest.raises(ExportError, match="unknown export format 'npz'"):
        export(trained, tmp_path / "x", format="npz", dataset=synthetic)
    register_format(ExportFormat("npz", ("fp32",), write_npz))
    try:
        result = export(trained, tmp_path / "n", format="npz", dataset=synthetic, parity_images=16)
        assert result.path.name == "weights.npz" and result.parity["images"] == 16
        assert ExportConfig(format="npz").format == "npz"
        with pytest.raises(ExportError, match="npz export writes fp32 only"):
            export(trained, tmp_path / "h", format="npz", precision="fp16", dataset=synthetic)
    finally:
        FORMATS.pop("npz")


def test_exported_files_are_readable_like_any_written_file(tmp_path):
    """Converters write through mkstemp (mode 0600): an export is for sharing, so it gets the umask's mode."""
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    path = export_onnx(build_model({"model": "resnet20", "width": 0.25}).eval(), tmp_path / "m.onnx")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_tflite_without_the_extra_says_how_to_get_it(tmp_path, trained, synthetic, monkeypatch):
    import sys

    for name in ("litert_torch", "ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # as if `slimbench[litert]` were not installed
    with pytest.raises(ExportError, match=r"needs litert-torch: pip install 'slimbench\[litert\]'"):
        export(trained, tmp_path / "t", format="tflite", precision="int8", dataset=synthetic, latency=False)
    assert not list((tmp_path / "t").glob("*.tflite"))
    from slimbench.errors import SlimbenchError
    from slimbench.measure.latency import measure_litert_latency

    with pytest.raises(SlimbenchError, match="needs ai-edge-litert"):
        measure_litert_latency(tmp_path / "missing.tflite")


def test_an_export_stands_alone_once_its_source_has_moved(tmp_path, trained, synthetic):
    """The MicroNet counts and the memory figures are counted on the network an export came from: recorded in
    its sidecar at export, they outlive the source. An older sidecar without them needs the source, which can
    be named where it moved to, and only the model the export was made from is accepted."""
    import json
    import shutil
    import warnings

    from slimbench.artifact import sidecar_path
    from slimbench.errors import ConfigError
    from slimbench.measure import memory_of
    from slimbench.score import inputs_from_artifact, load_rule

    source = tmp_path / "there" / "model.pt"
    source.parent.mkdir()
    shutil.copy(trained, source)
    result = export(source, tmp_path / "e", dataset=synthetic, latency=False, parity_images=64)
    rule = load_rule("micronet-ops")
    recorded, _ = inputs_from_artifact(result.path, rule)
    counted, _ = inputs_from_artifact(result.path, rule, source=source)  # on the network itself
    assert (recorded.w, recorded.f) == (counted.w, counted.f)
    memory = memory_of(source)
    moved = shutil.move(source, tmp_path / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no flash or peak RAM figure" warning
        assert memory_of(result.path) == memory
    assert inputs_from_artifact(result.path, rule)[0].f == counted.f

    older = json.loads(sidecar_path(result.path).read_text())
    for key in ("micronet_params", "micronet_ops", "flash_bytes", "peak_ram_bytes"):
        del older["metrics"][key]
    sidecar_path(result.path).write_text(json.dumps(older))
    with pytest.raises(ConfigError, match="is gone"):
        inputs_from_artifact(result.path, rule)
    after, _ = inputs_from_artifact(result.path, rule, source=moved)
    assert (after.w, after.f) == (counted.w, counted.f)
    spec = {"model": "resnet20", "width": 0.5}
    other = tmp_path / "other.pt"
    save_artifact(Artifact.from_model(spec, build_model(spec)), other)
    with pytest.raises(ConfigError, match="not the model"):
        inputs_from_artifact(result.path, rule, source=other)
