from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from slimbench.artifact import Artifact, save_artifact
from slimbench.cli import app
from slimbench.measure import count_model, measure, measure_latency, storage_bytes
from slimbench.models import available_models, build_model


@pytest.mark.parametrize("name", sorted(available_models()))
def test_macs_equal_torch_flop_counter(name):
    model = build_model({"model": name}).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    counts = count_model(model)
    assert counts.macs == counter.get_total_flops() // 2
    assert counts.macs == sum(layer.macs for layer in counts.layers)


def test_published_mac_counts():
    assert count_model(build_model({"model": "resnet20"})).macs == 40_813_184  # "about 41M"
    # MLPerf Tiny's ResNet-8, counted by hand: stem 442,368; stage 1 4,718,592; stage 2 3,670,016 with its 1x1
    # shortcut; stage 3 3,670,016; classifier 640. The MLTK port reports 12.5M MACs
    resnet8 = count_model(build_model({"model": "resnet8"}))
    assert resnet8.macs == 12_501_632
    # 3x3 convolutions 74,160, 1x1 shortcuts 2,560, batch norm 672, classifier 650
    assert resnet8.params == 78_042
    assert count_model(build_model({"model": "resnet18"})).macs == 555_422_720  # kuangliu ResNet-18: 555.4M


def test_nonzero_parameters_after_masking():
    model = build_model({"model": "resnet20"})
    conv = model.layer1[0].conv1
    with torch.no_grad():
        conv.weight.view(-1)[: conv.weight.numel() // 2] = 0
    counts = count_model(model)
    assert counts.params - counts.nonzero_params >= conv.weight.numel() // 2
    layer = next(x for x in counts.layers if x.name == "layer1.0.conv1")
    assert layer.nonzero_params == conv.weight.numel() - conv.weight.numel() // 2


def test_storage_sizes():
    assert storage_bytes(272_474, 32) == 1_089_896
    assert storage_bytes(272_474, 16) == 544_948
    assert storage_bytes(272_474, 8) == 272_474
    assert storage_bytes(3, 4) == 2  # packed, rounded up


def test_latency_reports_percentiles_and_threads():
    lat = measure_latency(build_model({"model": "resnet20", "width": 0.25}), batch_size=2, warmup=1, repeats=5)
    assert 0 < lat.median_ms <= lat.p90_ms <= lat.p99_ms
    assert lat.threads == torch.get_num_threads() and lat.images_per_s > 0


def test_measure_artifact_and_cli(tmp_path):
    spec = {"model": "resnet20", "width": 0.5}
    path = tmp_path / "m.pt"
    save_artifact(Artifact.from_model(spec, build_model(spec)), path)
    report = measure(path)
    assert report["params"] == 68_786 and report["source"] == str(path)
    result = CliRunner().invoke(app, ["measure", "resnet20", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["macs"] == 40_813_184


def test_sparse_size_pays_only_when_sparse_enough():
    from slimbench.measure.counts import sparse_storage_bytes, storage_bytes

    assert sparse_storage_bytes(8000, 8000, 8) > storage_bytes(8000, 8)  # dense: the mask is pure overhead
    assert sparse_storage_bytes(8000, 2000, 8) == 1000 + 2000 < storage_bytes(8000, 8)


def test_stored_precision_evaluation_runs_fp32_without_tf32():
    """cuDNN runs fp32 convolutions in TF32 by default on recent GPUs: a stored-precision evaluation switches that
    off while it runs (and only then), on every device."""
    from slimbench.measure.accuracy import evaluate

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 4 * 4, 10)

        def forward(self, x):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return self.fc(x.flatten(1))

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        evaluate(Probe(), torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 10,
                 batch_size=2, channels_last=False)
        assert seen == [(False, False)] * 2
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_a_low_bit_models_precision_reads_its_mean_bits_to_two_decimals():
    from types import SimpleNamespace

    from slimbench.measure.report import stored_precision

    mixed = SimpleNamespace(quant={"mode": "qat", "weight_bits": 3.23179411734234, "activation_bits": 4.0})
    assert stored_precision(mixed) == "w3.23a4 (its quantizers, fp32 arithmetic)"
    assert stored_precision(SimpleNamespace(quant=None)) == "fp32"
