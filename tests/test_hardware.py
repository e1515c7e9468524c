"""The host capability module, and every capability branch forced on whatever machine runs the tests."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
import torch

from slimbench.artifact import load_model
from slimbench.compress import QuantizeConfig, quantize
from slimbench.compress.quantize import _reduce_range
from slimbench.errors import ConfigError, ExportError, ModelError
from slimbench.export import check_parity
from slimbench.hardware import (
    BusyMachineWarning,
    assume_host,
    busy_cores,
    channel_multiple,
    host,
    host_from_cpuinfo,
    warn_if_busy,
)
from slimbench.measure import evaluate, resolve_precision

AVX2_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
ZEN4_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_vnni avx512_bf16
"""
ARM_CPUINFO = """processor\t: 0
Features\t: fp asimd evtstrm aes crc32 asimddp bf16
"""


def _stat_snapshots(busy_per_core: dict[int, int], idle_per_core: dict[int, int]):
    """A /proc/stat reader whose second read adds the given busy and idle jiffies to each core."""
    cores = sorted(os.sched_getaffinity(0))
    reads = iter([None, busy_per_core])

    def read() -> str:
        added = next(reads)
        # the all-core line spans every core, inside the affinity or not: never counted
        lines = [f"cpu  {999 if added is None else 9999} 0 999 999 0 0 0 0 0 0"]
        for core in [*cores, max(cores) + 1]:  # a core outside this process's affinity: busy, and not counted
            extra_busy = (added.get(core, 0) if core in cores else 50) if added is not None else 0
            extra_idle = idle_per_core.get(core, 0) if added is not None else 0
            busy, idle = 1000 + extra_busy, 5000 + extra_idle
            lines.append(f"cpu{core} {busy} 0 0 {idle} 0 0 0 0 0 0")
        return "\n".join(lines)
    return read, cores


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux's CPU affinity")
def test_busy_cores_counts_what_other_processes_use_of_this_process_cores():
    first = min(os.sched_getaffinity(0))
    read, cores = _stat_snapshots({first: 10}, {c: 10 for c in os.sched_getaffinity(0) if c != first})
    assert busy_cores(interval=0, read_stat=read) == pytest.approx(1.0)  # one core's worth, however many there are
    read, cores = _stat_snapshots({}, {c: 10 for c in cores})
    assert busy_cores(interval=0, read_stat=read) == 0
    assert busy_cores(interval=0, read_stat=lambda: (_ for _ in ()).throw(OSError("no /proc"))) is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_a_spinning_process_shows_as_a_busy_core():
    import subprocess
    import sys

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert busy_cores(interval=0.5) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


def test_a_run_that_would_not_fit_beside_busy_cores_is_warned_about(tmp_path, synthetic, monkeypatch):
    import warnings

    from slimbench import hardware
    from slimbench.measure.latency import measure_latency
    from slimbench.models import build_model
    from slimbench.train import TrainConfig, train

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with pytest.warns(BusyMachineWarning, match=rf"training x: other processes keep {cores} of the {cores} cores"):
        assert warn_if_busy(2, "training x", busy=float(cores)) == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_busy(cores, "training x", busy=0.2)  # the test runner's own noise: not worth a word
        warn_if_busy(1, "training x", busy=cores - 1.0) if cores > 1 else None  # room for one more thread

    monkeypatch.setattr(hardware, "busy_cores", lambda: float(cores))  # as if another training held every core
    config = TrainConfig.model_validate({"name": "crowded", "model": {"model": "resnet20", "width": 0.25}, "epochs": 1,
                                         "batch_size": 64, "data": {"name": "synthetic", "val_size": 64}})
    with pytest.warns(BusyMachineWarning, match="training crowded: other processes keep"):
        train(config, run_dir=tmp_path / "run", progress=False, dataset=synthetic)
    broken = config.model_copy(update={"model": {"model": "resnet99"}})
    with warnings.catch_warnings(), pytest.raises(ModelError, match="unknown model"):
        warnings.simplefilter("error", BusyMachineWarning)  # bad input: its one-line error, nothing before it
        train(broken, run_dir=tmp_path / "broken", progress=False, dataset=synthetic)
    with pytest.warns(BusyMachineWarning, match="timing: other processes keep"):
        timing = measure_latency(build_model({"model": "resnet20", "width": 0.25}), warmup=1, repeats=2)
    assert timing.busy_cores == cores  # the figure carries the state of the machine it was taken on


def test_cpuinfo_is_read_into_capabilities():
    avx2, zen4, arm = (host_from_cpuinfo(t) for t in (AVX2_CPUINFO, ZEN4_CPUINFO, ARM_CPUINFO))
    assert (avx2.cpu_class, avx2.native_bf16, avx2.int8_dot, avx2.simd_bits) == ("avx2", False, False, 256)
    assert (zen4.cpu_class, zen4.native_bf16, zen4.int8_dot, zen4.simd_bits) == ("avx512-bf16", True, True, 512)
    assert zen4.cpu_name == "AMD EPYC 9B14"
    assert (arm.simd_bits, arm.native_bf16, arm.int8_dot) == (128, True, True)


def test_assumed_profiles_drive_every_branch(monkeypatch):
    cpu = torch.device("cpu")
    with assume_host("avx2"):
        assert resolve_precision("auto", cpu) == "fp32"
        assert _reduce_range(QuantizeConfig()) is True  # 7-bit weights where u8*s8 can saturate
        assert channel_multiple() == 8
    with assume_host("avx512-bf16"):
        assert resolve_precision("auto", cpu) == "bf16"
        assert _reduce_range(QuantizeConfig()) is False
        assert channel_multiple() == 16
    assert channel_multiple("arm-neon") == 8 and channel_multiple("avx512") == 16
    assert resolve_precision("fp32", cpu) == "fp32"  # an explicit choice is never overridden
    monkeypatch.setenv("SLIMBENCH_HOST", "avx2")
    assert host().cpu_class == "avx2" and "SLIMBENCH_HOST=avx2" in host().describe()
    monkeypatch.setenv("SLIMBENCH_HOST", "pentium")
    with pytest.raises(ConfigError, match="unknown host profile 'pentium'"):
        host()
    with pytest.raises(ConfigError, match="unknown round_to target"):
        channel_multiple("avx1024")


def test_training_and_evaluation_agree_across_cpu_classes(tmp_path, synthetic, host_profile):
    """Training follows the host (bf16 autocast where native); the recorded accuracy is the stored-precision one,
    which any other host reproduces to the image."""
    from slimbench.train import TrainConfig, train

    config = TrainConfig.model_validate({
        "model": {"model": "resnet20", "width": 0.25}, "epochs": 1, "batch_size": 64,
        "data": {"name": "synthetic", "val_size": 64}, "report_test_each_epoch": False,
    })
    result = train(config, run_dir=tmp_path / "run", progress=False, dataset=synthetic)
    assert result.history[0]["precision"] == ("bf16" if host_profile.native_bf16 else "fp32")
    model, _ = load_model(result.model_path)
    recorded = round(result.metrics["test_acc"] * len(synthetic.test_y))
    for other in ("avx2", "avx512-bf16"):
        with assume_host(other):
            again = evaluate(model, synthetic.test_x, synthetic.test_y, 10)
        assert round(again.accuracy * again.count) == recorded


def test_half_artifacts_evaluate_on_every_host(tmp_path, trained, synthetic, host_profile):
    """The brief's float16 failure, reborn once as bf16 autocast feeding an fp16 model: never again."""
    for mode in ("fp16", "bf16"):
        result = quantize(trained, QuantizeConfig(mode=mode), tmp_path / mode, dataset=synthetic)
        half, _ = load_model(result.path)
        evaluation = evaluate(half, synthetic.test_x, synthetic.test_y, 10)
        assert evaluation.accuracy == pytest.approx(result.metrics["test_acc"])
        # the fast semantics (float arithmetic, every layer output rounded) equal real half arithmetic here
        with torch.no_grad():
            x = torch.randn(8, 3, 32, 32)
            real = half(x.to(next(half.parameters()).dtype)).float()
        from slimbench.measure.accuracy import _RoundOutputs

        emulated = _RoundOutputs(half, next(half.parameters()).dtype)(x)
        assert torch.equal(real.argmax(1), emulated.argmax(1))
        assert (real - emulated).abs().max() <= 0.02 * real.abs().max() + 1e-2


def test_explicit_autocast_is_refused_for_half_models(tmp_path, trained, synthetic):
    from slimbench.errors import SlimbenchError

    result = quantize(trained, QuantizeConfig(mode="fp16"), tmp_path / "h", dataset=synthetic)
    half, _ = load_model(result.path)
    with pytest.raises(SlimbenchError, match="evaluates in its stored precision only"):
        evaluate(half, synthetic.test_x, synthetic.test_y, 10, precision="bf16")


def _barely_trained(tmp_path, synthetic):
    from slimbench.train import TrainConfig, train

    config = TrainConfig.model_validate({
        "model": {"model": "resnet20", "width": 0.5}, "epochs": 1, "batch_size": 64,
        "data": {"name": "synthetic", "val_size": 64}, "report_test_each_epoch": False,
    })
    return train(config, run_dir=tmp_path / "barely", progress=False, dataset=synthetic).model_path


def test_int8_gate_accepts_near_tied_models_and_rejects_broken_exports(tmp_path, synthetic, host_profile):
    checkpoint = _barely_trained(tmp_path, synthetic)
    result = quantize(checkpoint, QuantizeConfig(mode="int8", calibration_size=256), tmp_path / "q",
                      dataset=synthetic)
    parity = result.metrics["parity"]
    assert parity["relative_noise"] < 0.3 and parity["decided_agreement"] >= 0.95
    model = load_model(checkpoint)[0]
    graph = onnx.load(str(result.path))
    scales = [t for t in graph.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1]
    wrong_scale = onnx.load(str(result.path))
    target = next(t for t in wrong_scale.graph.initializer if t.name == scales[len(scales) // 2].name)
    values = onnx.numpy_helper.to_array(target) * 4
    target.CopyFrom(onnx.numpy_helper.from_array(values, target.name))
    onnx.save(wrong_scale, str(tmp_path / "wrong_scale.onnx"))
    with pytest.raises(ExportError, match="does not behave like the PyTorch model"):
        check_parity(model, tmp_path / "wrong_scale.onnx", synthetic.test_x, max_abs_diff=None, min_agreement=0.95)


def test_int8_gate_rejects_a_dropped_layer(tmp_path, trained, synthetic):
    """An export that skips a residual block's second convolution (its output replaced by its input)."""
    result = quantize(trained, QuantizeConfig(mode="int8", calibration_size=256), tmp_path / "q", dataset=synthetic)
    model = load_model(trained)[0]
    graph = onnx.load(str(result.path))
    initializers = {t.name: t for t in graph.graph.initializer}
    producers = {out: n for n in graph.graph.node for out in n.output}

    def keeps_shape(conv) -> bool:  # stride 1 and as many outputs as inputs: removable without a shape error
        strides = next((list(a.ints) for a in conv.attribute if a.name == "strides"), [1, 1])
        weight = producers[conv.input[1]].input[0]  # the int8 initializer behind its DequantizeLinear
        dims = list(initializers[weight].dims)
        return strides == [1, 1] and dims[0] == dims[1] and dims[2] == 3

    convs = [n for n in graph.graph.node if n.op_type == "Conv" and keeps_shape(n)]
    dropped = convs[len(convs) // 2]
    for node in graph.graph.node:  # whoever read the dropped conv's output now reads its input
        for i, name in enumerate(node.input):
            if name == dropped.output[0]:
                node.input[i] = dropped.input[0]
    graph.graph.node.remove(dropped)
    onnx.save(graph, str(tmp_path / "dropped.onnx"))
    with pytest.raises(ExportError, match="does not behave like the PyTorch model"):
        check_parity(model, tmp_path / "dropped.onnx", synthetic.test_x, max_abs_diff=None, min_agreement=0.95)


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
BEST = RESULTS / "best"


@pytest.mark.realdata
@pytest.mark.parametrize("profile", ["avx2", "avx512-bf16"])
@pytest.mark.parametrize("artifact", [
    "resnet20-cifar10/model.pt",  # fp32, 9,165 / 10,000
    "resnet20-prune30-r8-fp16/model.pt",  # fp16, 9,112, recorded with real fp16 arithmetic on an AVX2 machine
    # 3-bit, 9,002: on the eligibility line by two images (BENCHMARKS section 39), so it must hold on every host
    pytest.param("best/model.pt", marks=pytest.mark.slow),
])
def test_committed_models_evaluate_to_their_recorded_images_on_every_host(tmp_path, real_data_dir, profile, artifact):
    """A committed artifact, evaluated in its stored precision, classifies exactly as many test images as it records,
    whatever the host is said to offer."""
    from slimbench.artifact import load_model
    from slimbench.measure import evaluate_checkpoint

    _, stored = load_model(RESULTS / artifact)
    recorded = round(stored.metrics["test_acc"] * 10_000)
    with assume_host(profile):
        report = evaluate_checkpoint(RESULTS / artifact, split="test", data_dir=real_data_dir,
                                     confusion_png=tmp_path / "confusion.png")
    assert report["correct"] == recorded and report["count"] == 10_000
    if artifact.startswith("best/"):
        assert recorded >= 9_000


@pytest.mark.slow
@pytest.mark.realdata
def test_the_best_export_is_eligible_under_onnx_runtime(real_data_dir):
    """The best model's ONNX export classifies the 9,000 test images its sidecar records, no fewer."""
    import json

    from slimbench.data import load_dataset
    from slimbench.measure.engines import engine_correct

    data = load_dataset("cifar10", real_data_dir)
    correct = engine_correct("onnxruntime", BEST / "model.lowbit.onnx", data.test_x, data.test_y)
    recorded = json.loads((BEST / "model.lowbit.json").read_text())["metrics"]["test_acc"]
    assert correct == round(recorded * len(data.test_y)) and correct >= 9000


def test_an_autocast_evaluation_is_labelled_not_recorded(tmp_path, trained):
    """`eval --precision bf16` is a speed option: the report says so; the default is the stored precision."""
    from typer.testing import CliRunner

    from slimbench.cli import app
    from slimbench.measure import evaluate_checkpoint

    stored = evaluate_checkpoint(trained, confusion_png=tmp_path / "a.png")
    fast = evaluate_checkpoint(trained, precision="bf16", confusion_png=tmp_path / "b.png")
    assert stored["precision"] == "fp32" and fast["precision"].startswith("bf16 autocast (not the stored")
    result = CliRunner().invoke(app, ["eval", str(trained), "--precision", "bf16", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0 and "bf16 autocast (not the stored precision)" in " ".join(result.output.split())
