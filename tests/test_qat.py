"""Low-bit quantization-aware training (Brevitas): recipe, training, grid, rebuild, export and score."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from typer.testing import CliRunner

from slimbench.artifact import Artifact, load_artifact, load_model, read_sidecar, save_artifact
from slimbench.cli import app
from slimbench.compress import PruneConfig, QuantizeConfig, prune, quantize
from slimbench.compress.qat import (
    calibrate_activations,
    effective_bits,
    mse_activation_step,
    mse_weight_steps,
    plan_bits,
    weight_levels,
)
from slimbench.data import normalize
from slimbench.errors import CompressionError, ConfigError, ExportError
from slimbench.export import export
from slimbench.measure.counts import scored_weight_bits
from slimbench.models import build_model
from slimbench.models.lowbit import apply_lowbit, is_lowbit
from slimbench.score import compute_score, inputs_from_artifact, load_rule
from zoo import ZOO, zoo_id


@pytest.fixture(scope="module")
def w4a4(tmp_path_factory, trained, synthetic):
    out = tmp_path_factory.mktemp("qat") / "w4a4"
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=4, calibration_size=128,
                            finetune={"epochs": 2, "optimizer": {"lr": 0.01}})
    return quantize(trained, config, out, dataset=synthetic, progress=False)


def test_w4a4_trains_and_stores_16_levels_per_channel(w4a4):
    log = [json.loads(line) for line in (w4a4.path.parent / "qat/finetune/log.jsonl").open()]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    # the training time reaches the study's "train s" column, as a prune fine-tune's does
    assert w4a4.metrics["train_seconds"] == pytest.approx(sum(r["epoch_s"] for r in log))
    # one parameter count: the fine-tune's run and the QAT result (and its score) agree; step sizes are not weights
    finetune_metrics = json.loads((w4a4.path.parent / "qat/finetune/metrics.json").read_text())
    assert finetune_metrics["params"] == w4a4.metrics["params"] == inputs_from_artifact(w4a4.path, load_rule("brief"))[0].w
    model, artifact = load_model(w4a4.path)
    layers = artifact.quant["layers"]
    levels = weight_levels(model)
    assert set(levels) == set(layers)
    for name, bits in layers.items():
        assert levels[name] <= 2 ** bits["weight_bits"] - 1  # symmetric narrow range: 15 levels at 4 bits
        stored = artifact.state[f"{name}.weight"].flatten(1)
        assert max(len(torch.unique(row)) for row in stored) <= 2 ** bits["weight_bits"] - 1  # in the file itself
    four_bit = [n for n, b in layers.items() if b["weight_bits"] == 4]
    assert len(four_bit) == len(layers) - 2  # first and last layer at 8 bits by default
    assert layers["conv1"]["weight_bits"] == 8 and layers["fc"]["weight_bits"] == 8
    assert layers["conv1"]["activation_signed"] and not layers["layer1.0.conv1"]["activation_signed"]


def test_qat_artifact_rebuilds_exactly(w4a4, synthetic):
    first, artifact = load_model(w4a4.path)
    second, _ = load_model(w4a4.path)
    assert sum(is_lowbit(m) for m in first.modules()) == len(artifact.quant["layers"])
    x = normalize(synthetic.test_x[:16], channels_last=False)
    with torch.no_grad():
        assert torch.equal(first(x), second(x))
    reloaded = load_artifact(w4a4.path)
    assert [step["stage"] for step in reloaded.lineage][-2:] == ["quantize", "train"]  # QAT, then its training
    assert reloaded.lineage[-2]["config"]["mode"] == "qat" and "test_acc" in reloaded.lineage[-2]["metrics"]


def test_quantized_inputs_take_2_to_the_bits_levels(w4a4, synthetic):
    model, artifact = load_model(w4a4.path)
    seen = {}
    layer = model.layer2[0].conv1
    handle = layer.input_quant.register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        model(normalize(synthetic.test_x[:32], channels_last=False))
    handle.remove()
    values = seen["out"].value if hasattr(seen["out"], "value") else seen["out"]
    assert len(torch.unique(values)) <= 2 ** artifact.quant["layers"]["layer2.0.conv1"]["activation_bits"]


def test_score_reads_effective_bits(w4a4):
    inputs, accuracy = inputs_from_artifact(w4a4.path, load_rule("brief"))
    quant = load_artifact(w4a4.path).quant
    assert 4 < inputs.qw < 8 and inputs.qw == pytest.approx(quant["weight_bits"])
    assert 4 < inputs.max_bits < 8 and inputs.max_bits == pytest.approx(quant["op_bits"])
    assert accuracy == pytest.approx(w4a4.metrics["test_acc"])
    float32 = compute_score(inputs.model_copy(update={"qw": 32, "qa": 32, "op_bits": None}))
    assert compute_score(inputs).total < float32.total / 4


def test_effective_bits_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    plan = {"0": {"weight_bits": 2, "activation_bits": 8}, "3": {"weight_bits": 4, "activation_bits": 4}}
    bits = effective_bits(model, plan, (3, 8, 8))
    conv_w, fc_w, fc_b = 108, 288, 2
    assert bits["weight_bits"] == pytest.approx((conv_w * 2 + fc_w * 4 + fc_b * 32) / (conv_w + fc_w + fc_b))
    conv_macs, fc_macs = 4 * 36 * 27, 144 * 2
    assert bits["activation_bits"] == pytest.approx((conv_macs * 8 + fc_macs * 4) / (conv_macs + fc_macs))
    assert bits["op_bits"] == pytest.approx((conv_macs * 8 + fc_macs * 4) / (conv_macs + fc_macs))


def test_per_layer_overrides_and_float_layers(synthetic):
    model = build_model({"model": "resnet20", "width": 0.25})
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=8, layer_bits={"layer3.*": {"weight_bits": 2}},
                            float_layers=["layer1.0.conv2"])
    plan = plan_bits(model, config, synthetic.train_x[:8])
    assert "layer1.0.conv2" not in plan
    assert plan["layer3.1.conv1"] == {"weight_bits": 2, "activation_bits": 8, "activation_signed": False}
    assert plan["layer2.1.conv1"]["weight_bits"] == 4 and plan["fc"]["weight_bits"] == 8
    with pytest.raises(ConfigError, match="match no"):
        plan_bits(model, config.model_copy(update={"float_layers": ["nonexistent*"]}), synthetic.train_x[:8])


# every family in the default run; the larger variants of families already covered are slow (Brevitas
# builds each quantized layer in tens of milliseconds)
QUICK_ZOO = ("resnet20-A", "preactresnet18-0.25", "densenet121-0.25", "mobilenetv2-0.25", "resnet34-imagenet-0.25")


@pytest.mark.parametrize("spec", [s if zoo_id(s) in QUICK_ZOO else pytest.param(s, marks=pytest.mark.slow)
                                  for s in ZOO], ids=zoo_id)
def test_every_zoo_model_takes_low_bit_layers(tmp_path, spec, synthetic):
    torch.manual_seed(0)
    model = build_model(spec)
    plan = plan_bits(model, QuantizeConfig(mode="qat", weight_bits=3, activation_bits=5), synthetic.train_x[:8])
    apply_lowbit(model, plan)
    calibrate_activations(model, synthetic.train_x[:16])
    artifact = Artifact.from_model(spec, model, quant={"mode": "qat", "layers": plan})
    save_artifact(artifact, tmp_path / "m.pt")
    rebuilt, _ = load_model(tmp_path / "m.pt")
    x = normalize(synthetic.test_x[:4], channels_last=False)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt(x))
    assert all(levels <= 2 ** plan[name]["weight_bits"] - 1 for name, levels in weight_levels(rebuilt).items())


def test_pruned_then_qat_composes(tmp_path, trained, synthetic):
    pruned = prune(trained, PruneConfig(kind="structured", ratio=0.3), tmp_path / "pruned", dataset=synthetic,
                   progress=False)
    result = quantize(pruned.model_path, QuantizeConfig(mode="qat", finetune=None, calibration_size=64),
                      tmp_path / "qat", dataset=synthetic, progress=False)
    _, artifact = load_model(result.path)
    assert artifact.structure == load_artifact(pruned.model_path).structure
    assert [step["stage"] for step in artifact.lineage][-2:] == ["prune", "quantize"]
    assert artifact.lineage[-1]["metrics"]["max_weight_levels"] <= 255
    inputs, _ = inputs_from_artifact(result.path, load_rule("brief"))
    assert inputs.ps == pytest.approx(artifact.lineage[-2]["metrics"]["structured_ratio"])


def test_qat_refuses_a_half_precision_parent_and_another_config(tmp_path, w4a4, trained, synthetic):
    half = quantize(trained, QuantizeConfig(mode="fp16"), tmp_path / "fp16", dataset=synthetic, progress=False)
    with pytest.raises(CompressionError, match=r"already quantized \(fp16\)"):
        quantize(half.path, QuantizeConfig(mode="qat", finetune=None), tmp_path / "again", dataset=synthetic)
    with pytest.raises(ConfigError, match="another config"):
        quantize(trained, QuantizeConfig(mode="qat", weight_bits=3), w4a4.path.parent, dataset=synthetic)


def test_qat_refuses_torch_compile_before_any_work(tmp_path, trained):
    """Inductor cannot lower the backward of Brevitas's layers: the config says so in one line, at once."""
    result = CliRunner().invoke(app, ["quantize", str(trained), "--mode", "qat", "--out", str(tmp_path / "q"),
                                      "--set", "finetune.compile=true"])
    assert isinstance(result.exception, ConfigError) and not (tmp_path / "q").exists()
    assert str(result.exception).startswith("config: finetune.compile: torch.compile cannot train Brevitas")


def test_qat_exports_as_integer_qdq_with_parity(tmp_path, w4a4, synthetic):
    result = export(w4a4.path, tmp_path / "export", dataset=synthetic, latency=False, parity_images=128)
    assert result.path.name == "model.lowbit.onnx" and result.parity["top1_agreement"] >= 0.99
    graph = onnx.load(str(result.path)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Clip"} <= ops
    assert [i.name for i in graph.input] == ["images"]  # weights are initializers only, not graph inputs too
    assert read_sidecar(result.path)["quant"]["format"] == "onnx-qcdq"
    int_weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
                   and t.dims and len(t.dims) >= 2]
    assert len(int_weights) >= 20
    assert max(len(set(w.reshape(w.shape[0], -1)[0].tolist())) for w in int_weights) <= 255
    inputs, _ = inputs_from_artifact(result.path, load_rule("brief"))
    assert inputs.max_bits == pytest.approx(load_artifact(w4a4.path).quant["op_bits"])
    card = (result.path.parent / "MODEL_CARD.md").read_text()
    assert f"{int(inputs.w):,} " in card.split("- Parameters:")[1].splitlines()[0]  # the card names the score's w
    with pytest.raises(ExportError, match="own bit"):
        export(w4a4.path, tmp_path / "x", precision="int8", dataset=synthetic, latency=False)


def test_cli_qat_calibrate_only(tmp_path, trained):
    out = tmp_path / "cli-qat"
    result = CliRunner().invoke(app, ["quantize", str(trained), "--mode", "qat", "--weight-bits", "2",
                                      "--activation-bits", "8", "--epochs", "0", "--out", str(out), "--no-progress",
                                      "--calibration-size", "64"])
    assert result.exit_code == 0, result.output
    assert "weight levels" in result.output
    quant = load_artifact(out / "model.pt").quant
    assert {b["weight_bits"] for b in quant["layers"].values()} == {2, 8}
    bad = CliRunner().invoke(app, ["quantize", str(trained), "--mode", "qat", "--weight-bits", "1",
                                   "--out", str(tmp_path / "bad")])
    assert isinstance(bad.exception, ConfigError) and "weight_bits" in str(bad.exception)


def test_measure_shows_each_layers_bits(w4a4):
    from slimbench.measure import measure

    report = measure(w4a4.path, accuracy_split="test")
    assert report["accuracy"]["accuracy"] == pytest.approx(w4a4.metrics["test_acc"])
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert (layers["conv1"]["weight_bits"], layers["layer2.0.conv1"]["weight_bits"]) == (8, 4)
    assert layers["layer2.0.conv1"]["activation_bits"] == 4
    assert report["size_bytes"]["as quantized"] < report["size_bytes"]["8-bit"]
    result = CliRunner().invoke(app, ["measure", str(w4a4.path), "--per-layer"])
    assert result.exit_code == 0 and "4/4" in result.output and "8/8" in result.output


def test_grid_zeros_are_not_counted_as_pruning(w4a4):
    """Weights on a 4-bit grid's zero level are stored like any other level: w stays the full count."""
    model, _ = load_model(w4a4.path)
    zeros = sum(int((p == 0).sum()) for name, p in model.named_parameters() if name.endswith("conv1.weight"))
    assert zeros > 0  # the grid does put small weights on zero
    inputs, _ = inputs_from_artifact(w4a4.path, load_rule("brief"))
    assert inputs.w == sum(p.numel() for n, p in model.named_parameters() if "_quant." not in n)


def test_mse_weight_steps_round_with_less_error_than_the_largest_weight():
    torch.manual_seed(0)
    weight = torch.randn(6, 16, 3, 3)
    weight[0, 0, 0, 0] = 20.0  # an outlier whose rounding error outweighs the rest of its channel at 2 bits
    for bits in (2, 3, 4):
        top = 2 ** (bits - 1) - 1
        steps = mse_weight_steps(weight, bits)

        def error(step: torch.Tensor, top: int = top) -> torch.Tensor:
            grid = (weight.flatten(1) / step[:, None]).round().clamp(-top, top) * step[:, None]
            return (grid - weight.flatten(1)).square().sum(dim=1)

        from_max = weight.flatten(1).abs().amax(dim=1) / top
        assert steps.shape == (6,) and bool((steps <= from_max + 1e-7).all())
        assert bool((error(steps) <= error(from_max) + 1e-6).all())
        if bits < 4:  # on Gaussian channels the largest weight wastes most of a 2- or 3-level grid
            assert float(error(steps)[1:].sum()) < 0.7 * float(error(from_max)[1:].sum())
    assert torch.isclose(mse_weight_steps(weight, 2)[0], torch.tensor(20.0))  # its one level is best spent there


def test_mse_step_init_sets_each_layers_step(synthetic):
    torch.manual_seed(0)
    model = build_model({"model": "resnet20", "width": 0.25})
    plan = plan_bits(model, QuantizeConfig(mode="qat", weight_bits=2, activation_bits=4), synthetic.train_x[:8])
    apply_lowbit(model, plan)
    calibrate_activations(model, synthetic.train_x[:16], weight_step_init="mse")
    for name, module in model.named_modules():
        if is_lowbit(module):
            expected = mse_weight_steps(module.weight, plan[name]["weight_bits"])
            assert torch.allclose(module.quant_weight().scale.flatten(), expected, rtol=1e-5), name
    with pytest.raises(ValueError, match="weight_step_init"):
        QuantizeConfig(mode="qat", weight_step_init="percentile")


def test_mse_activation_step_spends_a_low_bit_grid_on_the_bulk_not_the_peak():
    torch.manual_seed(0)
    inputs = torch.relu(torch.randn(50_000))
    inputs[:5] = 40.0  # rare peaks, as a percentile statistic sees them

    def error(step: float, bits: int) -> float:
        return float(((inputs / step).round().clamp(0, 2**bits - 1) * step - inputs).square().sum())

    for bits in (3, 4, 8):
        peak_step = 40.0 / (2**bits - 1)
        step = mse_activation_step(inputs, bits, signed=False, peak_step=peak_step)
        assert step <= peak_step and error(step, bits) <= error(peak_step, bits)
        if bits == 3:
            assert error(step, bits) < 0.35 * error(peak_step, bits)
    signed = torch.randn(50_000)
    step = mse_activation_step(signed, 3, signed=True, peak_step=1.0)  # levels -4..3
    assert 0.3 < step < 1.0


def test_mse_activation_init_moves_each_input_step_to_its_least_error(synthetic):
    torch.manual_seed(0)
    images = synthetic.train_x[:16]
    config = QuantizeConfig(mode="qat", weight_bits=3, activation_bits=3, activation_step_init="mse")
    steps = {}
    for start in ("percentile", "mse"):
        torch.manual_seed(0)
        model = build_model({"model": "resnet20", "width": 0.25})
        plan = plan_bits(model, config, synthetic.train_x[:8])
        apply_lowbit(model, plan)
        calibrate_activations(model, images, activation_step_init=start)
        steps[start] = {name: float(module.input_quant.scale()) for name, module in model.named_modules()
                        if is_lowbit(module)}
        if start == "mse":  # the first layer sees the images themselves, whatever the layers after it do
            first = model.conv1
            expected = mse_activation_step(normalize(images, channels_last=False), 8, True, steps["percentile"]["conv1"])
            assert steps["mse"]["conv1"] == pytest.approx(expected, rel=1e-5)
    assert steps["mse"].keys() == steps["percentile"].keys()
    assert all(steps["mse"][name] <= steps["percentile"][name] * (1 + 1e-5) for name in steps["mse"])
    assert sum(steps["mse"][n] < 0.9 * steps["percentile"][n] for n in steps["mse"]) >= len(steps["mse"]) // 2
    assert first.input_quant.bit_width() == 8
    with pytest.raises(ValueError, match="activation_step_init"):
        QuantizeConfig(mode="qat", activation_step_init="max")
    with pytest.raises(CompressionError, match="activation_step_init"):
        calibrate_activations(model, images, activation_step_init="max")


def test_training_after_qat_holds_only_pruned_weights_and_stores_the_grid(tmp_path, trained, synthetic):
    """The grid's zeros are weights: a train stage after QAT holds at zero only what pruning removed, writes
    each weight on its grid level, and the score leaves out exactly the masked weights."""
    from slimbench.train import TrainConfig, train

    sparse = prune(trained, PruneConfig(kind="unstructured", ratio=0.3, scope="global"), tmp_path / "sparse",
                   dataset=synthetic, progress=False)
    masks = load_artifact(sparse.model_path).masks
    assert masks and all(not mask.all() for mask in masks.values())
    qat = quantize(sparse.model_path, QuantizeConfig(mode="qat", weight_bits=3, activation_bits=4, finetune=None,
                                                     calibration_size=64), tmp_path / "w3", dataset=synthetic,
                   progress=False)
    quantized = load_artifact(qat.path)
    assert set(quantized.masks) == set(masks) and all(torch.equal(quantized.masks[n], masks[n]) for n in masks)
    pruned_count = sum(int((~mask).sum()) for mask in masks.values())
    grid_zeros = sum(int((quantized.state[name] == 0).sum()) for name in masks)
    assert grid_zeros > pruned_count  # 3 bits round more weights to zero than pruning removed
    total = sum(p.numel() for n, p in load_model(qat.path)[0].named_parameters() if "_quant." not in n)
    assert inputs_from_artifact(qat.path, load_rule("brief"))[0].w == total - pruned_count

    config = TrainConfig.model_validate({
        "model": {"model": "resnet20", "width": 0.5}, "epochs": 1, "batch_size": 64, "init_from": str(qat.path),
        "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05}})
    more = train(config, run_dir=tmp_path / "more", progress=False, dataset=synthetic)
    model, trained_more = load_model(more.model_path)
    assert all(torch.equal(trained_more.masks[n], masks[n]) for n in masks)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert (params[name][~mask] == 0).all(), name  # pruned weights stayed pruned
    # last.pt keeps the float weights behind the grid (to resume from): those the grid had put on zero moved
    shadow = load_artifact(tmp_path / "more" / "last.pt").state
    moved = sum(int(((quantized.state[n] == 0) & mask & (shadow[n] != 0)).sum()) for n, mask in masks.items())
    assert moved > 0.9 * (grid_zeros - pruned_count)  # they were not held at zero
    assert all((shadow[n][~mask] == 0).all() for n, mask in masks.items())
    layers = trained_more.quant["layers"]
    for name, bits in layers.items():  # the file holds grid levels, not the float weights behind them
        stored = trained_more.state[f"{name}.weight"].flatten(1)
        assert max(len(torch.unique(row)) for row in stored) <= 2 ** bits["weight_bits"] - 1, name
    assert inputs_from_artifact(more.model_path, load_rule("brief"))[0].w == total - pruned_count


def test_the_scores_weight_bits_average_over_the_weights_as_stored():
    """qw x w must be the bits stored: pruned weights of a 2-bit layer leave the 4- and 32-bit tensors a larger share."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    plan = {"0": {"weight_bits": 2, "activation_bits": 8}, "3": {"weight_bits": 4, "activation_bits": 4}}
    quant = {"mode": "qat", "layers": plan, **effective_bits(model, plan, (3, 8, 8))}
    assert scored_weight_bits(model, quant, []) == pytest.approx(quant["weight_bits"])  # dense: the recipe's mean
    mask = torch.zeros(4, 3, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = True  # 3 of the conv's 108 weights kept
    conv_w, fc_w, fc_b = 3, 288, 2
    expected = (conv_w * 2 + fc_w * 4 + fc_b * 32) / (conv_w + fc_w + fc_b)
    assert scored_weight_bits(model, quant, [], {"0.weight": mask}) == pytest.approx(expected)
    with torch.no_grad():  # an artifact without recorded masks: the zeros of the tensors its pruning named
        model[0].weight.mul_(mask)
    lineage = [{"stage": "prune", "metrics": {"sparse_params": ["0.weight"]}}]
    assert scored_weight_bits(model, quant, lineage) == pytest.approx(expected)
    assert scored_weight_bits(model, {"mode": "int8", "weight_bits": 8}, lineage) == 8


def test_gradual_pruning_during_qat_grows_the_parent_masks(tmp_path, trained, synthetic):
    """Sparsity ramped up while QAT trains (Zhu and Gupta 2017): the parent's pruned weights stay pruned, each layer
    ends at the final sparsity on the grid's zero, and the score counts exactly the masked weights as pruned."""
    exclude = ["conv1"]
    sparse = prune(trained, PruneConfig(kind="unstructured", ratio=0.3, scope="layer", exclude=exclude),
                   tmp_path / "sparse", dataset=synthetic, progress=False)
    ramp = {"final_sparsity": 0.6, "initial_sparsity": 0.3, "scope": "layer", "exclude": exclude, "end_epoch": 2}
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=4, calibration_size=64,
                            finetune={"epochs": 3, "optimizer": {"lr": 0.01}, "gradual_pruning": ramp})
    result = quantize(sparse.model_path, config, tmp_path / "qat", dataset=synthetic, progress=False)
    parent, child = load_artifact(sparse.model_path).masks, load_artifact(result.path)
    assert set(child.masks) == set(parent)
    for name, mask in parent.items():
        assert not (child.masks[name] & ~mask).any(), name  # pruned before QAT, pruned still
        assert (~child.masks[name]).float().mean() == pytest.approx(0.6, abs=0.01), name
        assert (child.state[name][~child.masks[name]] == 0).all(), name
    assert result.metrics["selected_epoch"] >= 2  # only epochs at the final sparsity are chosen
    model, _ = load_model(result.path)
    total = sum(p.numel() for n, p in model.named_parameters() if "_quant." not in n)
    masked = sum(int((~mask).sum()) for mask in child.masks.values())
    inputs = inputs_from_artifact(result.path, load_rule("brief"))[0]
    assert inputs.w == total - masked
    # the pruned 4-bit weights leave the dense first layer and the 32-bit batch norm a larger share of the bits
    assert inputs.qw == pytest.approx(scored_weight_bits(model, child.quant, child.lineage, child.masks))
    assert inputs.qw > child.quant["weight_bits"] + 0.1
    exported = export(result.path, tmp_path / "onnx", dataset=synthetic, latency=False, parity_images=64).path
    assert read_sidecar(exported)["metrics"]["scored_weight_bits"] == pytest.approx(inputs.qw)
    assert inputs_from_artifact(exported, load_rule("brief"))[0].qw == pytest.approx(inputs.qw)
    # an export written before the sidecar recorded it: counted on its source while that is at hand
    sidecar = exported.with_suffix(".json")
    payload = json.loads(sidecar.read_text())
    del payload["metrics"]["scored_weight_bits"]
    sidecar.write_text(json.dumps(payload))
    assert inputs_from_artifact(exported, load_rule("brief"))[0].qw == pytest.approx(inputs.qw)
    moved = tmp_path / "moved.pt"
    result.path.rename(moved)
    assert inputs_from_artifact(exported, load_rule("brief"))[0].qw == pytest.approx(child.quant["weight_bits"])
    assert inputs_from_artifact(exported, load_rule("brief"), source=moved)[0].qw == pytest.approx(inputs.qw)


def test_a_resumed_gradual_qat_records_what_pruning_removed_since_the_start(tmp_path, trained, synthetic,
                                                                           interrupt_next_training):
    """The gradual step's recorded ratio counts against the model the run started from, also when the run was
    interrupted with the ramp half-way and resumed from a sparser last.pt (a resumed 40-epoch row once recorded
    Pu 0.33 for 0.49)."""
    from slimbench.train import TrainingInterrupted

    ramp = {"final_sparsity": 0.6, "initial_sparsity": 0.2, "scope": "layer", "exclude": ["conv1"], "end_epoch": 2}
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=4, calibration_size=64,
                            finetune={"epochs": 2, "optimizer": {"lr": 0.01}, "gradual_pruning": ramp})

    def recorded(path):
        steps = [s for s in load_artifact(path).lineage if s.get("stage") == "prune"]
        return steps[-1]["metrics"]["unstructured_ratio"]

    with pytest.raises(TrainingInterrupted):  # the fixture stops the first training after its first epoch
        quantize(trained, config, tmp_path / "b", dataset=synthetic, progress=False)
    resumed = quantize(trained, config, tmp_path / "b", dataset=synthetic, progress=False)
    straight = quantize(trained, config, tmp_path / "a", dataset=synthetic, progress=False)
    assert recorded(resumed.path) == pytest.approx(recorded(straight.path)) and recorded(straight.path) > 0.3


def test_qat_at_fewer_bits_starts_from_a_qat_model(tmp_path, w4a4, synthetic):
    """Progressive QAT: 3 bits start from the 4-bit model's weights on their grid, with fresh step sizes."""
    parent = load_artifact(w4a4.path)
    result = quantize(w4a4.path, QuantizeConfig(mode="qat", weight_bits=3, activation_bits=3, finetune=None,
                                                calibration_size=64), tmp_path / "w3a3", dataset=synthetic,
                      progress=False)
    init = load_artifact(tmp_path / "w3a3" / "qat" / "init.pt")
    for name in parent.quant["layers"]:  # the float weights the 3-bit grid rounds are the 4-bit levels
        assert torch.equal(init.state[f"{name}.weight"], parent.state[f"{name}.weight"]), name
    model, artifact = load_model(result.path)
    layers = artifact.quant["layers"]
    assert layers["layer1.0.conv1"]["weight_bits"] == 3 and layers["conv1"]["weight_bits"] == 8
    assert all(count <= 2 ** layers[name]["weight_bits"] - 1 for name, count in weight_levels(model).items())
    assert [step["stage"] for step in artifact.lineage][-3:] == ["quantize", "train", "quantize"]
    inputs, _ = inputs_from_artifact(result.path, load_rule("brief"))
    assert inputs.qw < inputs_from_artifact(w4a4.path, load_rule("brief"))[0].qw
    # the parent's accuracy is a 4-bit model's, and is not called the float model's
    assert result.metrics["parent_test_acc"] == parent.metrics["test_acc"] and "float_test_acc" not in result.metrics


def test_progressive_qat_from_an_artifact_without_masks_takes_them_from_its_float_ancestor(tmp_path, trained,
                                                                                        synthetic):
    sparse = prune(trained, PruneConfig(kind="unstructured", ratio=0.3, scope="global"), tmp_path / "sparse",
                   dataset=synthetic, progress=False)
    four = quantize(sparse.model_path, QuantizeConfig(mode="qat", finetune=None, calibration_size=64),
                    tmp_path / "w4", dataset=synthetic, progress=False)
    recorded = load_artifact(four.path)
    older = tmp_path / "older.pt"  # as written before artifacts recorded their masks
    save_artifact(Artifact(spec=recorded.spec, state=recorded.state, structure=recorded.structure,
                           quant=recorded.quant, lineage=recorded.lineage, metrics=recorded.metrics), older)
    three = QuantizeConfig(mode="qat", weight_bits=3, activation_bits=3, finetune=None, calibration_size=64)
    with pytest.raises(ConfigError, match="written before pruning masks were recorded"):
        quantize(older, three, tmp_path / "w3-guess", dataset=synthetic, progress=False)
    with pytest.raises(ConfigError, match="pruned again after masks_from"):  # the model before pruning
        quantize(older, three.model_copy(update={"masks_from": str(trained)}), tmp_path / "w3-early",
                 dataset=synthetic, progress=False)
    stranger = tmp_path / "stranger.pt"
    save_artifact(Artifact.from_model(recorded.spec, build_model(recorded.spec)), stranger)
    with pytest.raises(ConfigError, match="is not an ancestor"):
        quantize(older, three.model_copy(update={"masks_from": str(stranger)}), tmp_path / "w3-wrong",
                 dataset=synthetic, progress=False)
    result = quantize(older, three.model_copy(update={"masks_from": str(sparse.model_path)}), tmp_path / "w3",
                      dataset=synthetic, progress=False)
    masks = load_artifact(result.path).masks
    expected = load_artifact(sparse.model_path).masks
    assert set(masks) == set(expected) and all(torch.equal(masks[n], expected[n]) for n in expected)
    grid_zeros = sum(int(((recorded.state[n] == 0) & expected[n]).sum()) for n in expected)
    assert grid_zeros > 0  # the zeros of the 4-bit parent would have taken these for pruned weights


def test_loading_a_state_keeps_the_step_sizes_trained_and_on_the_models_device(w4a4):
    """Brevitas rebuilds a layer's quantizers when a state is loaded into it: every learned step size becomes a new
    Parameter on the state's device. load_state_in_place keeps the parameters an optimiser holds, on the model's
    device (meta stands in for a GPU here: a tensor left on the CPU shows)."""
    from slimbench.models.lowbit import load_state_in_place

    model, artifact = load_model(w4a4.path)
    plain = dict(model.named_parameters())
    model.load_state_dict(artifact.state)
    assert [n for n, p in model.named_parameters() if p is not plain[n]]  # why the helper exists
    kept = dict(model.named_parameters())
    steps = [p for n, p in kept.items() if "_quant." in n]
    with torch.no_grad():
        for p in steps:
            p.mul_(2)
    load_state_in_place(model, artifact.state)
    assert all(p is kept[n] for n, p in model.named_parameters())
    assert all(torch.equal(p, artifact.state[n]) for n, p in model.named_parameters())  # the values loaded
    on_meta = model.to("meta")
    with pytest.warns(UserWarning):  # copying into meta tensors is a no-op, which torch says
        load_state_in_place(on_meta, artifact.state)
    assert {t.device.type for t in [*on_meta.parameters(), *on_meta.buffers()]} == {"meta"}


def test_a_resumed_or_averaged_low_bit_run_keeps_training_its_step_sizes(tmp_path, w4a4, synthetic):
    """Resuming loads last.pt into the model, and weight averaging loads the average for each evaluation: the step
    sizes must stay the optimiser's, or the epochs after a load train the weights alone."""
    from slimbench.train import TrainConfig, TrainingInterrupted, resume_training, train

    def config(**changes):
        return TrainConfig.model_validate({
            "model": {"model": "resnet20", "width": 0.5}, "epochs": 2, "batch_size": 64, "init_from": str(w4a4.path),
            "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05}, **changes})

    def steps(path):
        return {n: t for n, t in load_artifact(path).state.items() if n.endswith("scaling_impl.value")}

    after_first = {}

    def keep_first(record):
        if record["epoch"] == 1:
            after_first.update(steps(tmp_path / "ema" / "last.pt"))

    train(config(ema_decay=0.9), run_dir=tmp_path / "ema", progress=False, dataset=synthetic, on_epoch=keep_first)
    after_second = steps(tmp_path / "ema" / "last.pt")
    assert after_first and all(not torch.equal(after_first[n], after_second[n]) for n in after_first)

    straight = train(config(), run_dir=tmp_path / "a", progress=False, dataset=synthetic)

    def stop_after_one(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(config(), run_dir=tmp_path / "b", progress=False, dataset=synthetic, on_epoch=stop_after_one)
    resumed = resume_training(tmp_path / "b", progress=False, dataset=synthetic)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert all(torch.equal(t, steps(tmp_path / "a" / "last.pt")[n]) for n, t in steps(tmp_path / "b" / "last.pt").items())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_where_ramp_ends_picks_the_weights_the_trainers_ramp_zeroes(tmp_path, trained, synthetic, scope):
    """`sensitivity --sparsity` and the bit-plans script count a layer's weights where a QAT run's ramp ends, on a
    copy pruned once by `prune_where_ramp_ends`; the trainer gets there in steps, each on the weights the last
    left. With weights that do not move (a vanishing rate), the steps must end on exactly the one-shot zeros: the
    earlier zeros rank lowest, and the rest keep their order."""
    from slimbench.sparsity import GradualPruningConfig
    from slimbench.sparsity.unstructured import prune_where_ramp_ends

    ramp = {"final_sparsity": 0.6, "initial_sparsity": 0.2, "scope": scope, "exclude": ["conv1"], "end_epoch": 2}
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=4, calibration_size=64,
                            finetune={"epochs": 3, "optimizer": {"lr": 1e-20, "weight_decay": 0.0},
                                      "gradual_pruning": ramp})
    result = quantize(trained, config, tmp_path / "qat", dataset=synthetic, progress=False)
    start, _ = load_model(tmp_path / "qat" / "qat" / "init.pt")
    report = prune_where_ramp_ends(start, GradualPruningConfig.model_validate(ramp))
    assert report.sparsity == pytest.approx(0.6, abs=0.01)
    one_shot = {f"{name}.weight": module.weight != 0 for name, module in start.named_modules()
                if f"{name}.weight" in load_artifact(result.path).masks}
    stepped = load_artifact(result.path).masks
    assert set(one_shot) == set(stepped) and "conv1.weight" not in stepped
    for name, kept in stepped.items():
        assert torch.equal(kept, one_shot[name].cpu()), name
    if scope == "global":  # one threshold: the layers come out unequally sparse, as at 80% on the 50% structure
        shares = [float((~kept).float().mean()) for kept in stepped.values()]
        assert max(shares) - min(shares) > 0.05
