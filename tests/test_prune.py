from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from slimbench.artifact import Artifact, load_artifact, load_model, save_artifact
from slimbench.cli import app
from slimbench.compress import PruneConfig, prune, prune_model
from slimbench.errors import CheckpointError, ConfigError
from slimbench.measure import count_model
from slimbench.models import build_model
from slimbench.score import inputs_from_artifact, load_rule
from slimbench.sparsity.config import ramp_ratios
from slimbench.sparsity.unstructured import prune_unstructured
from zoo import ZOO, zoo_id

# Every zoo family, narrowed where the full model would make the test slow; the graph is the same.


def _save(tmp_path, spec, name="parent.pt"):
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():  # trained-looking BN so that no channel is trivially dead
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    path = tmp_path / name
    save_artifact(Artifact.from_model(spec, model), path)
    return path


@pytest.mark.parametrize("spec", ZOO, ids=zoo_id)
def test_structured_30_percent_shrinks_and_round_trips(tmp_path, spec):
    path = _save(tmp_path, spec)
    model, _ = load_model(path)
    target = "channels" if spec["model"] == "densenet121" else "params"  # densenet: one pass instead of a search
    result = prune(path, PruneConfig(ratio=0.3, target=target), run_dir=tmp_path / "pruned", progress=False)
    pruned, artifact = load_model(result.model_path)
    before, after = count_model(model), count_model(pruned)
    assert after.params < before.params and after.macs < before.macs
    if target == "params" and spec.get("shortcut") != "A":
        assert after.params / before.params == pytest.approx(0.7, abs=0.03)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape == (3, 10)
        # the saved structure rebuilds the same network: identical outputs after a save/load round trip
        rebuilt, _ = load_model(result.model_path)
        assert torch.equal(rebuilt(x), pruned(x))
    assert artifact.structure and artifact.lineage[-1]["stage"] == "prune"


def test_option_a_shortcuts_are_barriers(tmp_path):
    # Option A's zero-padding maps input channel i to output channel i: only the channels inside each block
    # may go, so the residual widths stay 16/32/64.
    spec = {"model": "resnet20", "shortcut": "A"}
    pruned, record = prune_model(build_model(spec), spec, PruneConfig(ratio=0.25, target="channels"))
    assert record["params_after"] < record["params_before"]
    assert pruned.conv1.out_channels == 16 and pruned.layer3[2].conv2.out_channels == 64
    assert pruned.layer1[0].conv1.out_channels == 12
    assert pruned.fc.in_features == 64


def test_classifier_is_protected_and_linear_pruning_is_named(tmp_path):
    spec = {"model": "resnet20"}
    model = build_model(spec)
    pruned, _ = prune_model(model, spec, PruneConfig(ratio=0.3))
    assert pruned.fc.out_features == 10
    with pytest.raises(ConfigError, match="only Linear layer is the classifier"):
        prune_model(model, spec, PruneConfig(kind="unstructured", ratio=0.2, layers=["linear"]))
    sparse, record = prune_model(model, spec, PruneConfig(kind="unstructured", ratio=0.2, layers=["linear"],
                                                          protect_classifier=False))
    assert record["sparse_params"] == ["fc.weight"]
    assert (sparse.fc.weight == 0).float().mean().item() == pytest.approx(0.2, abs=0.002)
    assert int((sparse.layer1[0].conv1.weight == 0).sum()) == 0


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("method", ["l1", "random"])
def test_unstructured_sparsity_equals_the_ratio(scope, method):
    spec = {"model": "resnet20"}
    torch.manual_seed(0)
    pruned, record = prune_model(build_model(spec), spec,
                                 PruneConfig(kind="unstructured", method=method, scope=scope, ratio=0.6))
    assert record["sparsity"] == pytest.approx(0.6, abs=0.001)
    if scope == "layer":
        assert all(abs(s - 0.6) < 0.01 for s in record["per_layer_sparsity"].values())
    counts = count_model(pruned)
    assert counts.params == record["params_before"]  # unstructured keeps shapes
    assert record["unstructured_ratio"] == pytest.approx((record["nonzero_before"] - counts.nonzero_params)
                                                         / record["original_params"])
    assert record["structured_ratio"] == 0


def test_lamp_scores_a_weight_against_the_layer_weights_not_smaller_than_it():
    from slimbench.sparsity.criteria import criterion

    score = criterion("lamp", "unstructured").unstructured
    weight = torch.tensor([[3.0, -1.0], [0.0, 2.0]])
    expected = torch.tensor([[9 / 9, 1 / 14], [0.0, 4 / 13]])
    assert torch.allclose(score(weight, torch.Generator()), expected)


@pytest.mark.parametrize("method, small_layer_kept", [("l1", 0.0), ("lamp", 0.5)])
def test_global_lamp_compares_layers_whatever_their_scale(method, small_layer_kept):
    """Global magnitude empties a layer whose weights are 100x smaller; LAMP, blind to a layer's scale, prunes
    two layers that differ only by it alike."""
    torch.manual_seed(0)
    big, small = nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3)
    with torch.no_grad():
        small.weight.copy_(big.weight / 100)
    layers = {"big": big, "small": small}
    report = prune_unstructured(layers, PruneConfig(kind="unstructured", method=method, scope="global", ratio=0.5))
    assert report.sparsity == pytest.approx(0.5)
    assert 1 - report.per_layer["small"] == pytest.approx(small_layer_kept, abs=0.02)


def test_magnitude_pruning_removes_the_smallest_weights():
    spec = {"model": "resnet20"}
    model = build_model(spec)
    pruned, _ = prune_model(model, spec, PruneConfig(kind="unstructured", scope="global", ratio=0.5))
    kept = torch.cat([p.weight.abs().flatten() for n, p in pruned.named_modules()
                      if isinstance(p, torch.nn.Conv2d)])
    original = torch.cat([p.weight.abs().flatten() for n, p in model.named_modules() if isinstance(p, torch.nn.Conv2d)])
    threshold = kept[kept > 0].min()
    assert (original[kept == 0] <= threshold).all()


def test_fine_tuning_keeps_the_zeros_and_score_reads_the_lineage(tmp_path, synthetic):
    path = _save(tmp_path, {"model": "resnet20", "width": 0.5})
    finetune = {"epochs": 1, "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05}}
    result = prune(path, PruneConfig(kind="unstructured", ratio=0.5, scope="global", finetune=finetune),
                   run_dir=tmp_path / "u", dataset=synthetic, progress=False)
    model, artifact = load_model(result.model_path)
    before, _ = load_model(tmp_path / "u" / "step1" / "pruned.pt")
    pruned_names = artifact.lineage[-2]["metrics"]["sparse_params"]
    params, old = dict(model.named_parameters()), dict(before.named_parameters())
    pruned_artifact = load_artifact(tmp_path / "u" / "step1" / "pruned.pt")
    assert sorted(pruned_artifact.masks) == sorted(pruned_names) == sorted(artifact.masks)
    for name in pruned_names:
        assert torch.equal(params[name] == 0, old[name] == 0), name  # same zeros, no more, no fewer
        assert torch.equal(pruned_artifact.masks[name], old[name] != 0)  # the recorded masks are those zeros
        assert torch.equal(artifact.masks[name], pruned_artifact.masks[name])  # and the fine-tune carries them
    assert not torch.equal(params[pruned_names[0]], old[pruned_names[0]])  # yet the weights did train
    assert [step["stage"] for step in artifact.lineage] == ["prune", "train"]
    inputs, accuracy = inputs_from_artifact(result.model_path, load_rule("brief"))
    assert inputs.pu == pytest.approx(artifact.lineage[0]["metrics"]["unstructured_ratio"])
    assert inputs.ps == 0 and accuracy is not None
    assert inputs.w == count_model(model).nonzero_params


def test_iterative_structured_with_fine_tuning_and_resume(tmp_path, synthetic):
    path = _save(tmp_path, {"model": "resnet20", "width": 0.5})
    finetune = {"epochs": 1, "data": {"name": "synthetic", "val_size": 64}}
    cfg = PruneConfig(ratio=0.4, schedule="iterative", steps=2, ramp="cubic", finetune=finetune)
    result = prune(path, cfg, run_dir=tmp_path / "it", dataset=synthetic, progress=False)
    steps = result.metrics["steps"]
    assert [s["ratio"] for s in steps] == pytest.approx(ramp_ratios(0.4, 2, "cubic"))
    assert steps[0]["params_after"] > steps[1]["params_after"]
    assert all(s["train_seconds"] > 0 for s in steps)  # the stage trained for every step, not for the last alone
    assert result.metrics["train_seconds"] == pytest.approx(sum(s["train_seconds"] for s in steps))
    _, artifact = load_model(result.model_path)
    assert [s["stage"] for s in artifact.lineage] == ["prune", "train", "prune", "train"]
    inputs, _ = inputs_from_artifact(result.model_path, load_rule("brief"))
    assert inputs.ps == pytest.approx(1 - steps[1]["params_after"] / steps[0]["params_after"]
                                      * steps[0]["params_after"] / count_model(build_model(
                                          {"model": "resnet20", "width": 0.5})).params, abs=1e-9)
    from slimbench.runs import DB_NAME, ResultsStore

    commands = sorted(r.command for r in ResultsStore(tmp_path / DB_NAME).runs(10))
    assert commands == ["prune", "train", "train"]  # one store for the pipeline, beside its directory
    # a second call with the same directory and config finds everything done and changes nothing
    again = prune(path, cfg, run_dir=tmp_path / "it", dataset=synthetic, progress=False)
    assert again.metrics["steps"] == steps
    with pytest.raises(ConfigError, match="another config"):
        prune(path, cfg.model_copy(update={"ratio": 0.5}), run_dir=tmp_path / "it", dataset=synthetic, progress=False)


def test_interrupted_fine_tune_says_run_the_pipeline_again(tmp_path, synthetic, interrupt_next_training):
    """The trainer's own hint (`train --resume`) would leave the pipeline's later steps undone."""
    from slimbench.train import TrainingInterrupted

    path = _save(tmp_path, {"model": "resnet20", "width": 0.25})
    cfg = PruneConfig(ratio=0.3, finetune={"epochs": 2, "data": {"name": "synthetic", "val_size": 64}})
    with pytest.raises(TrainingInterrupted, match=r"1 epoch.* run the same command again") as caught:
        prune(path, cfg, run_dir=tmp_path / "p", dataset=synthetic, progress=False)
    assert "--resume" not in str(caught.value)
    result = prune(path, cfg, run_dir=tmp_path / "p", dataset=synthetic, progress=False)
    assert [s["stage"] for s in load_model(result.model_path)[1].lineage] == ["prune", "train"]


@pytest.mark.parametrize("method", ["l2", "bn_scale", "taylor", "taylor_per_score", "random"])
def test_structured_importance_criteria(tmp_path, synthetic, method):
    path = _save(tmp_path, {"model": "resnet20", "width": 0.5})
    result = prune(path, PruneConfig(method=method, ratio=0.3, target="channels", scope="global"),
                   run_dir=tmp_path / method, dataset=synthetic, progress=False)
    model, _ = load_model(result.model_path)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert result.metrics["steps"][0]["structured_ratio"] > 0.1


def test_tampered_structure_is_refused(tmp_path):
    path = _save(tmp_path, {"model": "resnet20"})
    result = prune(path, PruneConfig(ratio=0.3, target="channels"), run_dir=tmp_path / "p", progress=False)
    payload = torch.load(result.model_path, weights_only=True)
    first = next(iter(payload["structure"]))
    payload["structure"][first]["out_channels"] += 1
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not match their recorded hash"):
        load_model(tmp_path / "bad.pt")


@pytest.mark.parametrize("kind", ["structured", "unstructured"])
def test_a_ratio_already_reached_is_an_error_not_a_silent_copy(tmp_path, kind):
    """Ratios count against the original architecture: 0.3 again after 0.3 would remove nothing."""
    path = _save(tmp_path, {"model": "resnet20", "width": 0.5})
    once = prune(path, PruneConfig(kind=kind, ratio=0.3), run_dir=tmp_path / "once", progress=False)
    with pytest.raises(ConfigError, match=r"ratio 0.3 removed nothing: ratios count against the original"):
        prune(once.model_path, PruneConfig(kind=kind, ratio=0.3), run_dir=tmp_path / "twice", progress=False)
    # the refused run left nothing that would stop the corrected command from using the same directory
    twice = prune(once.model_path, PruneConfig(kind=kind, ratio=0.5), run_dir=tmp_path / "twice", progress=False)
    assert twice.metrics["steps"][-1]["nonzero_after"] < once.metrics["steps"][-1]["nonzero_after"]


def test_config_rejects_impossible_combinations():
    with pytest.raises(ValueError, match="unknown unstructured pruning criterion 'taylor'; choose one of l1, lamp, random"):
        PruneConfig(kind="unstructured", method="taylor")
    with pytest.raises(ValueError, match="steps > 1 needs schedule: iterative"):
        PruneConfig(steps=3)


def test_cli_prune(tmp_path):
    path = _save(tmp_path, {"model": "resnet20"})
    runner = CliRunner()
    result = runner.invoke(app, ["prune", str(path), "--ratio", "0.3", "--target", "channels",
                                 "--out", str(tmp_path / "c"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "model.pt").exists() and "pruned" in result.output
    result = runner.invoke(app, ["prune", str(path), "--method", "taylr"])
    assert result.exit_code != 0


def test_gradual_pruning_while_training(tmp_path, synthetic):
    from slimbench.train import TrainConfig, resume_training, train

    config = TrainConfig.model_validate({
        "model": {"model": "resnet20", "width": 0.25}, "epochs": 4, "batch_size": 64,
        "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05},
        "gradual_pruning": {"final_sparsity": 0.7, "end_epoch": 3, "ramp": "cubic"},
    })
    seen = []

    def stop_after_two(record):
        seen.append(record["sparsity"])
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    from slimbench.train.loop import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        train(config, run_dir=tmp_path / "g", progress=False, dataset=synthetic, on_epoch=stop_after_two)
    result = resume_training(tmp_path / "g", progress=False, dataset=synthetic, on_epoch=stop_after_two)
    ramp = [config.gradual_pruning.sparsity_at(e, 4) for e in range(4)]
    assert seen == pytest.approx(ramp, abs=0.002) and ramp[0] < ramp[1] < ramp[2] == ramp[3] == pytest.approx(0.7)
    assert result.metrics["selected_epoch"] >= 3  # never an epoch that was still less sparse
    model, artifact = load_model(result.model_path)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.7, abs=0.01)
    assert [s["stage"] for s in artifact.lineage] == ["prune", "train"]
    inputs, _ = inputs_from_artifact(result.model_path, load_rule("brief"))
    assert inputs.pu == pytest.approx(artifact.lineage[0]["metrics"]["unstructured_ratio"]) and inputs.pu > 0.5


def test_network_slimming_regulariser_shrinks_bn_scales(tmp_path, synthetic):
    from slimbench.train import TrainConfig, train

    def mean_gamma(bn_l1):
        config = TrainConfig.model_validate({
            "model": {"model": "resnet20", "width": 0.25}, "epochs": 2, "batch_size": 64, "bn_l1": bn_l1,
            "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05, "weight_decay": 0},
        })
        model, _ = load_model(train(config, run_dir=tmp_path / str(bn_l1), progress=False,
                                    dataset=synthetic).model_path)
        return torch.cat([m.weight.abs() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]).mean()

    assert mean_gamma(1e-2) < mean_gamma(0.0) - 0.01


def test_pruning_criteria_are_plug_ins_and_an_unknown_one_is_an_error():
    """No silent fallback to random ranking: a misspelled criterion is refused where the config is read."""
    import torch

    from slimbench.errors import CompressionError
    from slimbench.sparsity.criteria import CRITERIA, Criterion, criterion, register_criterion

    with pytest.raises(ValueError, match="unknown structured pruning criterion 'l3'"):
        PruneConfig(method="l3")
    with pytest.raises(ValueError, match="unknown unstructured pruning criterion 'taylor'"):
        PruneConfig(kind="unstructured", method="taylor")
    with pytest.raises(CompressionError, match="unknown structured pruning criterion"):
        criterion("magnitude", "structured")
    register_criterion(Criterion("smallest_last", unstructured=lambda w, _: 1 / (w.detach().abs() + 1e-12)))
    try:
        config = PruneConfig(kind="unstructured", method="smallest_last", ratio=0.5)
        from slimbench.sparsity.unstructured import compute_masks

        layer = torch.nn.Linear(4, 2)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0], [5.0, -6.0, 7.0, -8.0]]))
        masks = compute_masks({"fc": layer}, config)
        assert masks["fc"].flatten().tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # the largest weights went first
    finally:
        CRITERIA.pop("smallest_last")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_of_channels_last_weights_match_contiguous_ones(scope):
    """Eager training keeps convolutions channels_last; gradual pruning ranks those weights as they are (torch's
    L1 rule viewed them flat and raised on such a layout)."""
    from slimbench.sparsity.unstructured import compute_masks

    torch.manual_seed(0)
    layers = {"a": torch.nn.Conv2d(8, 16, 3), "b": torch.nn.Conv2d(16, 16, 3)}
    config = PruneConfig(kind="unstructured", ratio=0.5, scope=scope)
    flat = compute_masks(layers, config)
    for layer in layers.values():
        layer.to(memory_format=torch.channels_last)
    assert not layers["a"].weight.is_contiguous()
    masks = compute_masks(layers, config)
    assert all(torch.equal(masks[name], flat[name]) for name in layers)
    assert sum(int((m == 0).sum()) for m in masks.values()) == (8 * 16 * 9 + 16 * 16 * 9) // 2


def test_a_pruning_step_masks_what_it_zeroed_and_keeps_earlier_zeros_as_they_were():
    from slimbench.sparsity.unstructured import masks_after_pruning, pruning_masks

    before = {"a.weight": torch.tensor([0.0, 0.5, 0.0, 0.2]), "b.weight": torch.tensor([0.3, 0.0])}
    after = {"a.weight": torch.tensor([0.0, 0.5, 0.0, 0.0]), "b.weight": torch.tensor([0.3, 0.0])}
    earlier = {"a.weight": torch.tensor([False, True, True, True])}  # index 0 pruned before; index 2 a grid zero
    masks = masks_after_pruning(before, after, ["a.weight"], earlier)
    assert masks["a.weight"].tolist() == [False, True, True, False]  # the grid zero stays free; 0.2 is now pruned
    assert "b.weight" not in masks  # not pruned by this step nor before
    # an artifact from before masks were recorded: the zeros of the tensors its lineage names
    lineage = [{"stage": "prune", "metrics": {"sparse_params": ["b.weight"]}}]
    assert pruning_masks(after, lineage, None)["b.weight"].tolist() == [True, False]
    assert pruning_masks(after, lineage, earlier)["a.weight"].tolist() == [False, True, True, True]


def test_a_stage_config_names_its_teacher_where_it_is_now(tmp_path):
    """A study moved, or run from another checkout, names its teacher by another path: the saved prune or quantize
    config is still the same run when that file holds the same bytes or is gone, and another run otherwise."""
    from slimbench.compress import QuantizeConfig
    from slimbench.compress.finetune import same_stage_config

    here, there, other = tmp_path / "here.pt", tmp_path / "there.pt", tmp_path / "other.pt"
    here.write_bytes(b"teacher")
    there.write_bytes(b"teacher")
    other.write_bytes(b"another teacher")

    def qat(teacher, epochs=40):
        return QuantizeConfig(mode="qat", finetune={"epochs": epochs, "distill": {"teacher": str(teacher)}})

    assert same_stage_config(qat(here), qat(there))
    assert not same_stage_config(qat(here), qat(other))
    assert not same_stage_config(qat(here), qat(there, epochs=15))
    assert same_stage_config(qat(tmp_path / "gone.pt"), qat(there))
    assert not same_stage_config(qat(here), QuantizeConfig(mode="qat", finetune={"epochs": 40}))
    ramp = {"finetune": {"epochs": 4, "distill": {"teacher": str(here)}}}
    assert same_stage_config(PruneConfig(**ramp), PruneConfig(**{"finetune": {**ramp["finetune"],
                                                                             "distill": {"teacher": str(there)}}}))


def test_a_channel_costs_the_score_its_weights_and_their_macs_in_every_layer_of_its_group():
    import torch_pruning as tp
    from torch import nn

    from slimbench.sparsity.criteria import ScoreCostImportance

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    example = torch.zeros(1, 3, 8, 8)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    importance = ScoreCostImportance(tp.importance.GroupMagnitudeImportance(p=1))
    importance.bind(model, example, (2.0, 100.0))
    group = graph.get_pruning_group(model[0], tp.prune_conv_out_channels, idxs=[0, 1])
    # conv 1 makes the channel: 3x3x3 weights at 8x8 outputs; conv 2 reads it: 4x3x3 weights at 4x4 outputs
    assert importance.channel_cost(group) == pytest.approx((27 + 36) / 2.0 + (27 * 64 + 36 * 16) / 100.0)
    group = graph.get_pruning_group(model[3], tp.prune_conv_out_channels, idxs=[0])
    # conv 2 makes it (8x3x3 at 4x4); the classifier reads 16 inputs of it, one MAC each
    assert importance.channel_cost(group) == pytest.approx((72 + 160) / 2.0 + (72 * 16 + 160) / 100.0)
    magnitudes = tp.importance.GroupMagnitudeImportance(p=1)(group)
    assert torch.allclose(importance(group), magnitudes / importance.channel_cost(group))


def test_target_score_removes_that_share_of_the_fp32_score():
    from slimbench.compress.structured import measure_target, prune_structured

    model = build_model({"model": "resnet20", "width": 0.5}).eval()
    config = PruneConfig(ratio=0.35, target="score", scope="global")
    counts = count_model(model, (3, 32, 32))
    assert measure_target(model, config, (3, 32, 32)) == pytest.approx(counts.params / 5.6e6 + counts.macs / 8.3e8)
    assert config.score_norms == (load_rule("brief").param_norm, load_rule("brief").op_norm)
    result = prune_structured(model, config, 0.35, measure_target(model, config, (3, 32, 32)))
    assert result.achieved == pytest.approx(0.35, abs=0.02)


def test_a_higher_global_ratio_never_prunes_less():
    """Torch-Pruning skips a group whose channels all fall under the global threshold: without a floor per
    group, a stem whose channels all rank low kept every one of them at high ratios."""
    from slimbench.compress.structured import _prune_once, measure_target

    model = build_model({"model": "resnet20", "width": 0.5}).eval()
    with torch.no_grad():  # the stem's channels rank lowest of all
        model.conv1.weight.mul_(1e-3)
    config = PruneConfig(target="params", scope="global", round_to=4)
    example = torch.zeros(1, 3, 32, 32)
    left = [measure_target(_prune_once(model, config, ratio, example, None), config, (3, 32, 32))
            for ratio in (0.1, 0.3, 0.5, 0.7)]
    assert left == sorted(left, reverse=True) and left[-1] < left[0]
    stem = _prune_once(model, config, 0.3, example, None).conv1
    assert stem.out_channels == 4  # cut to its floor (10% of 8 channels, rounded up to 4), not skipped
