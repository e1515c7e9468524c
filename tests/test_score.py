from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from slimbench.cli import app
from slimbench.errors import ConfigError
from slimbench.score import ScoreInputs, compute_score, inputs_from_artifact, load_rule

BRIEF = {"w": 198_309, "f": 29_055_103}


def test_brief_example_both_readings():
    # Hand-worked: w/5.6e6 = 0.0354123, f/8.3e8 = 0.0350061.
    original = compute_score(ScoreInputs(**BRIEF, ps=0.3, measured_on="original"), "brief")
    assert original.param_term == pytest.approx(0.7 * 198_309 / 5.6e6)
    assert original.op_term == pytest.approx(0.7 * 29_055_103 / 8.3e8)
    assert round(original.total, 4) == 0.0493  # what the formula gives for the brief's inputs
    assert round(compute_score(ScoreInputs(**BRIEF, ps=0.2, measured_on="original")).total, 4) == 0.0563  # reported
    pruned = compute_score(ScoreInputs(**BRIEF, ps=0.3), "brief")  # w, f already counted after pruning
    assert pruned.ps_applied == 0 and round(pruned.total, 4) == 0.0704
    assert "enter the formula as 0" in pruned.notes[0]


def test_bits_and_unstructured_pruning():
    full = compute_score(ScoreInputs(w=1e6, f=1e8, measured_on="original"))
    w8a8 = compute_score(ScoreInputs(w=1e6, f=1e8, qw=8, qa=8, measured_on="original"))
    assert w8a8.total == pytest.approx(full.total / 4)
    w4a8 = compute_score(ScoreInputs(w=1e6, f=1e8, qw=4, qa=8, measured_on="original"))
    assert w4a8.param_term == pytest.approx(full.param_term / 8) and w4a8.op_term == pytest.approx(full.op_term / 4)
    sparse = compute_score(ScoreInputs(w=1e6, f=1e8, pu=0.5, measured_on="original"))
    assert sparse.param_term == pytest.approx(full.param_term / 2) and sparse.op_term == pytest.approx(full.op_term)


def test_rules_presets_and_yaml(tmp_path):
    course = compute_score(ScoreInputs(**BRIEF), "course-macs")
    assert course.op_term == pytest.approx(29_055_103 / 2.8e8)
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nparam_norm: 1.0e6\nop_norm: 1.0e8\nmin_accuracy: 0.85\n")
    assert load_rule(str(path)).min_accuracy == 0.85
    with pytest.raises(ConfigError, match="unknown score rule"):
        load_rule("nope")
    path.write_text("name: bad\nparam_norm: 1.0e6\nop_norm: 1.0e8\nthreshold: 0.9\n")
    with pytest.raises(ConfigError, match="unknown key 'threshold'"):
        load_rule(str(path))


def test_score_cli_from_numbers():
    runner = CliRunner()
    result = runner.invoke(app, ["score", "--w", "198309", "--f", "29055103", "--ps", "0.3",
                                 "--measured-on", "original", "--accuracy", "0.9159", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert round(data["score"], 4) == 0.0493 and data["eligible"] is True
    table = runner.invoke(app, ["score", "--w", "198309", "--f", "29055103", "--ps", "0.3", "--accuracy", "0.85"])
    assert "0.0704" in table.output and "NO" in table.output and "within 0.1 point" not in table.output
    assert data["borderline"] is False
    # nine test images above the line: eligible, and told to confirm it (the frontier issue's rule)
    close = runner.invoke(app, ["score", "--w", "198309", "--f", "29055103", "--accuracy", "0.9009"])
    assert "yes" in close.output and "within 0.1 point of the line" in close.output
    below = runner.invoke(app, ["score", "--w", "198309", "--f", "29055103", "--accuracy", "0.8995", "--json"])
    assert json.loads(below.output)["eligible"] is False and json.loads(below.output)["borderline"] is True


def test_score_reads_a_checkpoint(tmp_path):
    from slimbench.artifact import Artifact, save_artifact
    from slimbench.models import build_model

    spec = {"model": "resnet20"}
    path = tmp_path / "m.pt"
    model = build_model(spec)
    save_artifact(Artifact.from_model(spec, model, metrics={"test_acc": 0.92}), path)
    result = CliRunner().invoke(app, ["score", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    assert data["inputs"]["w"] == nonzero and data["inputs"]["f"] == 40_813_184
    assert data["score"] == pytest.approx(nonzero / 5.6e6 + 40_813_184 / 8.3e8)
    assert data["eligible"] is True
    micronet = CliRunner().invoke(app, ["score", str(path), "--rule", "micronet-ops", "--json"])
    assert micronet.exit_code == 0, micronet.output
    ops = json.loads(micronet.output)["inputs"]["f"]
    assert ops > 2 * 40_813_184  # every MAC is a 32-bit multiply and a 32-bit addition, plus batch norm


def test_micronet_ops_reproduce_the_course_normaliser():
    """ResNet-18 (kuangliu CIFAR version) at 16 bits is the normaliser 8.3e8 of the course's formula."""
    from slimbench.measure.counts import count_micronet_ops
    from slimbench.models import build_model

    model = build_model({"model": "resnet18"})
    ops = count_micronet_ops(model, default_bits=(16, 16))
    assert ops.multiplies == pytest.approx(555_422_720 / 2)
    assert ops.additions == pytest.approx(555_422_720)
    assert ops.total == pytest.approx(8.3e8, rel=0.01)
    at_32 = count_micronet_ops(model)
    assert at_32.multiplies == pytest.approx(555_422_720) and at_32.total > ops.total


def test_micronet_rule_from_an_artifact_counts_bits_sparsity_and_masks(tmp_path):
    import torch

    from slimbench.artifact import Artifact, save_artifact
    from slimbench.models import build_model

    torch.manual_seed(0)
    model = build_model({"model": "resnet20", "width": 0.5})
    dense = tmp_path / "dense.pt"
    save_artifact(Artifact.from_model({"model": "resnet20", "width": 0.5}, model), dense)
    with torch.no_grad():
        model.layer3[0].conv1.weight[: model.layer3[0].conv1.weight.shape[0] // 2] = 0  # half the filters zero
    sparse = tmp_path / "sparse.pt"
    save_artifact(Artifact.from_model({"model": "resnet20", "width": 0.5}, model), sparse)
    rule = load_rule("micronet-ops")
    dense_in, _ = inputs_from_artifact(dense, rule)
    sparse_in, _ = inputs_from_artifact(sparse, rule)
    zeros = model.layer3[0].conv1.weight.numel() // 2
    assert sparse_in.w == pytest.approx(dense_in.w - zeros + model.layer3[0].conv1.weight.numel() / 32)
    assert sparse_in.f < dense_in.f
    result = compute_score(dense_in, rule)
    assert result.op_term == pytest.approx(dense_in.f / 8.3e8)  # no second bit factor
    assert any("bit factor" in note for note in result.notes)


def test_pruning_ratios_add_up_across_steps_and_ignore_other_stages():
    from slimbench.score import pruning_ratios

    lineage = [
        {"stage": "train", "metrics": {"structured_ratio": 0.5}},  # not a prune step: ignored
        {"stage": "prune", "metrics": {"structured_ratio": 0.2, "unstructured_ratio": 0.0}},
        {"stage": "prune", "metrics": {"structured_ratio": 0.1, "unstructured_ratio": 0.25}},
        {"stage": "quantize"},
    ]
    assert pruning_ratios(lineage) == pytest.approx((0.3, 0.25))
    assert pruning_ratios([{"stage": "prune", "metrics": {"structured_ratio": 0.7, "unstructured_ratio": 0.6}},
                           {"stage": "prune", "metrics": {"structured_ratio": 0.7}}]) == (0.99, 0.6)
    assert pruning_ratios([]) == (0.0, 0.0)


def test_qat_zeros_inside_a_pruned_tensor_are_not_pruning():
    """w leaves out only the zeros a pruning step forced; the low-bit grid's extra zeros are stored levels."""
    from torch import nn

    from slimbench.measure.counts import scored_nonzero

    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[:3] = 0  # 30 weights pruned by the recorded step
        model[0].weight[5, :4] = 0  # 4 more that a 4-bit grid rounded to zero during QAT
    lineage = [{"stage": "prune", "metrics": {"params_after": 100, "nonzero_after": 70, "sparse_params": ["0.weight"]}}]
    assert scored_nonzero(model, {"mode": "qat"}, lineage) == 70
    assert scored_nonzero(model, {"mode": "int8"}, lineage) == 66  # a float or int8 model: every zero counts
    assert scored_nonzero(model, {"mode": "qat"}, []) == 100
