"""Flash and peak RAM for batch-1 inference, checked on networks small enough to count by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimbench.measure import measure
from slimbench.measure.memory import flash_bytes, memory_report, peak_ram
from slimbench.models import build_model
from zoo import ZOO, zoo_id


class Residual(nn.Module):
    """input 3x8x8 -> conv a (4 ch) -> relu -> conv b (4 ch) -> add a's output -> flatten -> linear (10)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        y = F.relu(a)
        y = self.b(y) + a
        return self.fc(torch.flatten(y, 1))


def test_peak_ram_of_a_residual_network_by_hand():
    # elements: input 192, a 256, relu 256, b 256, add 256, flatten 256, fc 10 (float32: 4 bytes each)
    # a: {x, a} = 448; relu: {a, relu} = 512 (x freed after a); b: {a, relu, b} = 768, the residual keeps a alive;
    # add: {a, b, add} = 768 (relu freed after b); flatten: {add, flat} = 512; fc: {flat, fc} = 266
    peak, where, layers = peak_ram(Residual(), (3, 8, 8))
    assert [(layer.name, layer.alive_bytes // 4) for layer in layers] == [
        ("a", 448), ("relu", 512), ("b", 768), ("add", 768), ("flatten", 512), ("fc", 266)]
    assert (peak, where) == (768 * 4, "b")
    assert peak_ram(Residual(), (3, 8, 8), activation_bits=8)[0] == 768  # int8 activations: a byte each


def test_flash_counts_weights_at_their_bits_and_a_bias_and_scale_per_channel():
    model = Residual()
    weights = 4 * 3 * 9 + 4 * 4 * 9 + 10 * 256  # 108 + 144 + 2560
    channels = 4 + 4 + 10
    assert flash_bytes(model, 32) == weights * 4 + channels * 8
    assert flash_bytes(model, 8) == weights + channels * 8
    assert flash_bytes(model, {"a": 8, "b": 4, "fc": 8}) == 108 + 72 + 2560 + channels * 8


def test_measure_reports_flash_and_peak_ram():
    report = measure("resnet20")
    memory = report["memory"]
    # in the first block: its input (kept for the residual), the second conv's input and its output, fp32
    assert memory["peak_ram_bytes"] == 3 * 16 * 32 * 32 * 4 and memory["peak_at"] == "layer1.0.conv2"
    assert memory["flash_bytes"] > 4 * 270_000 and memory["layers"][0]["name"] == "conv1"
    small = memory_report(nn.Sequential(nn.Conv2d(3, 2, 1)), (3, 2, 2))
    assert small.peak_ram_bytes == (12 + 8) * 4 and small.flash_bytes == 6 * 4 + 2 * 8


def test_batch_norm_and_activations_after_a_convolution_are_fused_into_it():
    # input 3x4x4 (48) -> conv (2x4x4 = 32) -> bn and relu fused into it (the conv's tensor) -> conv (32)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 1))
    peak, where, layers = peak_ram(model, (3, 4, 4), activation_bits=8)
    assert [(layer.name, layer.output_bytes, layer.alive_bytes) for layer in layers] == [
        ("0", 32, 80), ("1", 0, 32), ("2", 0, 32), ("3", 32, 64)]
    assert (peak, where) == (80, "0")


def test_doctor_budget_names_the_layer_and_the_fix(tmp_path):
    import subprocess
    import sys

    from slimbench.errors import SlimbenchError
    from slimbench.measure import diagnose_target
    from slimbench.measure.doctor import parse_budget

    assert parse_budget("ram=256KB,flash=1MB") == (256 * 1024, 1024 * 1024)
    assert parse_budget("flash=2MiB") == (None, 2 * 1024 * 1024) and parse_budget("stm32f746") == (320 * 1024, 1024 * 1024)
    with pytest.raises(SlimbenchError, match="budget must look like"):
        parse_budget("ram=plenty")
    _, findings = diagnose_target("resnet20", budget="ram=128KB,flash=512KB")
    ram, flash = (next(f for f in findings if f.check == check) for check in ("ram", "flash"))
    assert ram.severity == "error" and "192.0 KiB at layer1.0.conv2" in ram.message and "48.0 KiB" in ram.fix
    assert flash.severity == "error" and "layer3" in flash.message and "int8 weights take it to" in flash.fix
    _, fits = diagnose_target("resnet20:width=0.25", budget="nano33ble")
    assert [f.check for f in fits if f.check in ("ram", "flash", "budget")] == ["budget"]
    result = subprocess.run([sys.executable, "-m", "slimbench.cli", "doctor", "resnet20", "--budget", "ram=64KB"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "exceeds the budget of 64.0 KiB" in result.stdout


@pytest.mark.parametrize("spec", ZOO, ids=zoo_id)
def test_every_zoo_model_has_a_peak_ram(spec):
    """Peak RAM traces the network with torch.fx: a forward that reads a size from a Proxy (airnet's global pool,
    once) left the model without flash and RAM figures in every table."""
    model = build_model(spec)
    peak, where, layers = peak_ram(model, (3, 32, 32))
    largest = max(layer.output_bytes for layer in layers)
    assert 0 < largest <= peak and where in {layer.name for layer in layers}


def test_memory_of_says_why_a_model_has_no_figures(tmp_path, monkeypatch):
    """A table shows a missing figure as "-"; the warning names the file and the reason, so a network that
    stopped tracing is seen at once rather than sessions later."""
    from slimbench.artifact import Artifact, save_artifact
    from slimbench.errors import SlimbenchError
    from slimbench.measure import memory_of
    from slimbench.measure.summary import MeasurementWarning

    spec = {"model": "resnet8"}
    path = tmp_path / "model.pt"
    save_artifact(Artifact.from_model(spec, build_model(spec)), path)
    assert memory_of(path)["peak_ram_bytes"] > 0

    def untraceable(*args, **kwargs):
        raise SlimbenchError("torch.fx cannot trace forward")

    monkeypatch.setattr("slimbench.measure.memory.memory_report", untraceable)
    with pytest.warns(MeasurementWarning, match=r"model\.pt: no flash or peak RAM figure: torch.fx cannot trace"):
        assert memory_of(path) is None
