"""Per-layer bit sensitivity: one layer quantized at a time, validation drops, and the layer_bits suggestion."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slimbench.artifact import load_model
from slimbench.cli import app
from slimbench.compress.calibration import validation_images
from slimbench.compress.sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    bit_sensitivity,
    score_saved,
    suggest_layer_bits,
    suggestion_effect,
)
from slimbench.errors import CompressionError
from slimbench.measure import count_model
from slimbench.measure.accuracy import evaluate
from slimbench.score import PRESETS, compute_score
from slimbench.sparsity import GradualPruningConfig, select_layers
from slimbench.sparsity.unstructured import prune_unstructured

NORMS = (PRESETS["brief"].param_norm, PRESETS["brief"].op_norm)


@pytest.fixture(scope="module")
def report(trained, synthetic):
    return bit_sensitivity(trained, bits=(2, 8), images=64, calibration_size=128, dataset=synthetic)


def test_every_layer_is_tried_at_every_width_against_the_float_model(report, trained, synthetic):
    model, artifact = load_model(trained)
    names = [n for n, m in model.named_modules() if type(m).__name__ in ("Conv2d", "Linear")]
    assert sorted(layer.name for layer in report.layers) == sorted(names)
    assert all(set(layer.drops) == {2, 8} for layer in report.layers)
    val_x, val_y = validation_images(synthetic, artifact)
    assert report.images == len(val_x) == 64
    assert report.reference_acc == evaluate(model, val_x, val_y, synthetic.num_classes).accuracy
    assert all(layer.macs > 0 and layer.nonzero_params > 0 for layer in report.layers)


def test_eight_bits_cost_nothing_and_two_bits_cost_more(report):
    eight = [layer.drops[8] for layer in report.layers]
    two = [layer.drops[2] for layer in report.layers]
    assert max(abs(d) for d in eight) <= 2 / 64  # two validation images at most, on any layer
    assert sum(two) > sum(eight) + 0.05


def _layer(name, params, macs, drops):
    return LayerSensitivity(name=name, nonzero_params=params, macs=macs, drops=drops)


def test_suggestion_takes_the_cheapest_savings_first_within_the_budget():
    report = SensitivityReport(checkpoint="m.pt", reference_acc=0.9, images=1000, calibration_images=10, layers=[
        _layer("first", 100, 10_000, {3: 0.0, 4: 0.0}),
        _layer("big_robust", 10_000, 1_000_000, {2: 0.02, 3: 0.002, 4: 0.0}),
        _layer("big_fragile", 10_000, 1_000_000, {2: 0.30, 3: 0.05, 4: 0.001}),
        _layer("small_robust", 100, 10_000, {2: 0.001, 3: 0.0, 4: 0.0}),
    ])
    chosen = suggest_layer_bits(report, NORMS, base_bits=4, budget=0.01, keep=["first"])
    assert chosen == {"big_robust": {"weight_bits": 3, "activation_bits": 3},
                      "small_robust": {"weight_bits": 3, "activation_bits": 3}}
    # a target saving stops early: the first move alone is enough
    first_move = score_saved(report.layers[1], 3, 4, NORMS)
    assert suggest_layer_bits(report, NORMS, budget=None, target_saving=first_move / 2) == {
        "big_robust": {"weight_bits": 3, "activation_bits": 3}}
    # an unlimited budget takes every layer not kept, at the move with the best ratio
    assert set(suggest_layer_bits(report, NORMS, budget=None, target_saving=1.0, keep=["first"])) == {
        "big_robust", "big_fragile", "small_robust"}
    with pytest.raises(CompressionError, match="budget"):
        suggest_layer_bits(report, NORMS, budget=None)


def test_protected_layers_go_up_and_are_never_moved_down():
    report = SensitivityReport(checkpoint="m.pt", reference_acc=0.9, images=1000, calibration_images=10, layers=[
        _layer("first", 100, 10_000, {3: 0.2, 4: 0.05}),
        _layer("fragile", 400, 500_000, {3: 0.02, 4: 0.012}),
        _layer("robust", 10_000, 1_000_000, {3: 0.003, 4: 0.001}),
    ])
    assert suggest_layer_bits(report, NORMS, budget=None, protect=0.01, keep=["first"]) == {
        "fragile": {"weight_bits": 8, "activation_bits": 8}}
    both = suggest_layer_bits(report, NORMS, budget=1.0, protect=0.01, protect_bits=6, keep=["first"])
    assert both == {"fragile": {"weight_bits": 6, "activation_bits": 6}, "robust": {"weight_bits": 3, "activation_bits": 3}}
    assert score_saved(report.layers[1], 6, 4, NORMS) < 0  # going up costs score
    effect = suggestion_effect(report, both, 4, NORMS)
    assert effect["up"] == ["fragile"] and effect["down"] == ["robust"]
    assert effect["drop_spent"] == pytest.approx(0.002)
    assert effect["score_saved"] == pytest.approx(score_saved(report.layers[1], 6, 4, NORMS)
                                                  + score_saved(report.layers[2], 3, 4, NORMS))


def test_score_saved_matches_the_formula():
    layer = _layer("l", 5600, 830_000, {4: 0.0})
    assert score_saved(layer, 2, 4, NORMS) == pytest.approx(2 / 32 * (5600 / 5.6e6 + 830_000 / 8.3e8))


def test_cli_prints_the_table_and_writes_json_and_plot(tmp_path, trained, synthetic, monkeypatch):
    import slimbench.cli as cli

    monkeypatch.setattr(cli, "_dataset_of", lambda checkpoint, data_dir: synthetic)
    out = CliRunner().invoke(app, ["sensitivity", str(trained), "--bits", "3,4", "--images", "32", "--save",
                                   "0.001", "--weight-step-init", "mse", "--activation-step-init", "mse",
                                   "--plot", str(tmp_path / "s.png"),
                                   "--json", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    assert "layer_bits" in out.output and "w3a3" in out.output and "kept" in out.output
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["base_bits"] == 4 and len(payload["layers"]) > 10 and payload["weight_step_init"] == "mse"
    assert payload["activation_step_init"] == "mse"
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_refuses_without_a_goal_or_with_widths_outside_2_to_8(tmp_path, trained):
    out = CliRunner().invoke(app, ["sensitivity", str(trained)])
    assert out.exit_code != 0 and "--budget" in str(out.exception)
    with pytest.raises(CompressionError, match="bit widths"):
        bit_sensitivity(trained, bits=(1, 4))


def test_mse_step_init_loses_less_at_two_bits(report, trained, synthetic):
    mse = bit_sensitivity(trained, bits=(2, 8), images=64, calibration_size=128, dataset=synthetic,
                          weight_step_init="mse")
    assert report.weight_step_init == "max" and mse.weight_step_init == "mse"
    assert sum(layer.drops[2] for layer in mse.layers) < sum(layer.drops[2] for layer in report.layers)
    with pytest.raises(CompressionError, match="weight_step_init"):
        bit_sensitivity(trained, bits=(4,), dataset=synthetic, weight_step_init="percentile")
    with pytest.raises(CompressionError, match="activation_step_init"):
        bit_sensitivity(trained, bits=(4,), dataset=synthetic, activation_step_init="max")


def test_parameters_can_be_counted_where_a_global_ramp_ends_while_drops_stay_measured_on_the_model(
        report, trained, synthetic):
    ramp = GradualPruningConfig(final_sparsity=0.8, scope="global", exclude=["conv1"])
    at_end = bit_sensitivity(trained, bits=(2, 8), images=64, calibration_size=128, dataset=synthetic,
                             count_params_at=ramp)
    model, _ = load_model(trained)
    config = ramp.as_prune_config(0.8)
    prune_unstructured(select_layers(model, config), config)
    expected = {layer.name: layer.nonzero_params for layer in count_model(model).layers}
    assert {layer.name: layer.nonzero_params for layer in at_end.layers} == expected
    before = {layer.name: layer for layer in report.layers}
    assert all(layer.drops == before[layer.name].drops for layer in at_end.layers)
    assert all(layer.macs == before[layer.name].macs for layer in at_end.layers)
    # conv1 and the classifier stay dense; one threshold leaves the others unequally sparse, 80% of them in all
    pruned = [layer for layer in at_end.layers if layer.name not in ("conv1", "fc")]
    assert at_end.layers[0].nonzero_params == before["conv1"].nonzero_params
    kept = sum(layer.nonzero_params for layer in pruned) / sum(before[layer.name].nonzero_params for layer in pruned)
    assert kept == pytest.approx(0.2, abs=0.01)
    assert len({round(layer.nonzero_params / before[layer.name].nonzero_params, 2) for layer in pruned}) > 1
    assert at_end.params_counted_at == {"final_sparsity": 0.8, "scope": "global", "method": "l1",
                                        "exclude": ["conv1"]}
    assert report.params_counted_at is None


def test_cli_counts_at_the_ramp_end_and_refuses_an_unknown_scope_in_one_line(tmp_path, trained, synthetic,
                                                                            monkeypatch):
    import slimbench.cli as cli

    monkeypatch.setattr(cli, "_dataset_of", lambda checkpoint, data_dir: synthetic)
    out = CliRunner().invoke(app, ["sensitivity", str(trained), "--bits", "3,4", "--images", "32", "--save", "0.001",
                                   "--sparsity", "0.8", "--exclude", "conv1", "--json", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    assert "params at 80% (global)" in out.output
    assert json.loads((tmp_path / "s.json").read_text())["params_counted_at"]["final_sparsity"] == 0.8
    bad = CliRunner().invoke(app, ["sensitivity", str(trained), "--save", "0.001", "--sparsity", "0.8",
                                   "--scope", "everywhere"])
    assert bad.exit_code != 0 and "scope" in str(bad.exception) and "\n" not in str(bad.exception)


def test_a_plans_score_is_what_score_reads_from_the_qat_run_of_that_plan(tmp_path, trained, synthetic):
    """`--target-score` aims at plan_scorer's figure, so it must be the one `slimbench score` will read from the
    artifact the QAT run stores: mixed bits, first and last at 8, weights counted where the ramp ends."""
    from slimbench.compress import QuantizeConfig, quantize
    from slimbench.score import inputs_from_artifact
    from slimbench.score.plan import plan_scorer

    layer_bits = {"layer3.*": {"weight_bits": 3, "activation_bits": 3},
                  "layer1.0.conv2": {"weight_bits": 2, "activation_bits": 2}}
    ramp = {"final_sparsity": 0.6, "initial_sparsity": 0.2, "scope": "layer", "exclude": ["conv1"], "end_epoch": 1}
    config = QuantizeConfig(mode="qat", weight_bits=4, activation_bits=4, calibration_size=64, layer_bits=layer_bits,
                            finetune={"epochs": 2, "optimizer": {"lr": 0.01}, "gradual_pruning": ramp})
    result = quantize(trained, config, tmp_path / "qat", dataset=synthetic, progress=False)
    inputs = inputs_from_artifact(result.path, PRESETS["brief"])[0]
    stored = compute_score(inputs, PRESETS["brief"]).total
    score_of = plan_scorer(trained, GradualPruningConfig.model_validate(ramp), synthetic)
    assert score_of(layer_bits, 4, PRESETS["brief"]) == pytest.approx(stored, rel=1e-6)
    dense = plan_scorer(trained, None, synthetic)
    assert dense(layer_bits, 4, PRESETS["brief"]) > stored  # the pruned weights are not counted
    assert dense({}, 4, PRESETS["brief"]) > dense(layer_bits, 4, PRESETS["brief"]) > dense({}, 3, PRESETS["brief"])
    with pytest.raises(CompressionError, match="MACs"):
        dense({}, 4, PRESETS["micronet-ops"])


def test_cli_aims_the_suggestion_at_a_target_score(tmp_path, trained, synthetic, monkeypatch):
    import slimbench.cli as cli
    from slimbench.score.plan import plan_scorer

    monkeypatch.setattr(cli, "_dataset_of", lambda checkpoint, data_dir: synthetic)
    at_base = plan_scorer(trained, None, synthetic)({}, 4, PRESETS["brief"])
    target = 0.85 * at_base
    out = CliRunner().invoke(app, ["sensitivity", str(trained), "--bits", "2,3,4", "--images", "32",
                                   "--target-score", f"{target:.6f}", "--json", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["score_at_base_bits"] == pytest.approx(at_base)
    assert payload["score_suggested"] <= target and payload["layer_bits"]
    assert "met" in out.output and "NOT met" not in out.output
    # the printed plan really scores what the line says
    scored = plan_scorer(trained, None, synthetic)(payload["layer_bits"], 4, PRESETS["brief"])
    assert scored == pytest.approx(payload["score_suggested"])
    both = CliRunner().invoke(app, ["sensitivity", str(trained), "--save", "0.001", "--target-score", "0.001"])
    assert both.exit_code != 0 and "not both" in str(both.exception)
    ops = CliRunner().invoke(app, ["sensitivity", str(trained), "--target-score", "0.001", "--rule", "micronet-ops"])
    assert ops.exit_code != 0 and "MACs" in str(ops.exception)
