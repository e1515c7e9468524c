from __future__ import annotations

import json

import pytest
import torch

from slimbench.artifact import load_model
from slimbench.config import load_config
from slimbench.errors import ConfigError, TrainingError
from slimbench.runs import ResultsStore
from slimbench.train import TrainConfig, TrainingInterrupted, resume_training, train
from slimbench.train.config import ScheduleConfig
from slimbench.train.loop import _Trainer, is_better_epoch
from slimbench.train.schedule import lr_factor


def small_config(**changes) -> TrainConfig:
    base = {
        "model": {"model": "resnet20", "width": 0.5}, "epochs": 4, "batch_size": 64,
        "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05},
    }
    base.update(changes)
    return TrainConfig.model_validate(base)


def test_training_learns_and_writes_the_run(tmp_path, synthetic):
    result = train(small_config(epochs=6), run_dir=tmp_path / "run", progress=False, dataset=synthetic)
    assert result.metrics["test_acc"] > 0.6  # chance is 0.1
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    for name in ("model.pt", "best.pt", "last.pt", "config.yaml", "log.jsonl", "metrics.json", "curves.png"):
        assert (tmp_path / "run" / name).exists(), name
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(h["epoch_s"] > 0 and h["eval_s"] > 0 for h in result.history)  # training and evaluation, apart
    model, artifact = load_model(result.model_path)
    assert artifact.lineage[-1]["stage"] == "train"
    assert artifact.metrics["selection"] == "best validation accuracy, ties to the lower validation loss"
    logged = [json.loads(line) for line in lines]
    chosen = min(logged, key=lambda r: (-r["val_acc"], r["val_loss"], r["epoch"]))
    assert result.metrics["selected_epoch"] == chosen["epoch"]
    assert isinstance(model, torch.nn.Module)
    rows = ResultsStore(tmp_path / "slimbench.db").runs()
    assert rows[0].status == "done" and rows[0].metrics["test_acc"] == result.metrics["test_acc"]


def test_resume_equals_uninterrupted(tmp_path, synthetic):
    cfg = small_config(ema_decay=0.9, augment={"cutout": 8, "mixup_alpha": 0.2, "alternate_flip": True},
                       whiten_stem=True)
    straight = train(cfg, run_dir=tmp_path / "a", progress=False, dataset=synthetic)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="epoch 2 is saved"):
        train(cfg, run_dir=tmp_path / "b", progress=False, dataset=synthetic, on_epoch=stop_after_two)
    resumed = resume_training(tmp_path / "b", progress=False, dataset=synthetic)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.metrics["test_acc"] == straight.metrics["test_acc"]
    assert [h["epoch"] for h in resumed.history if h.get("resumed")] == [3]  # the log marks where it resumed
    assert not any(h.get("resumed") for h in straight.history)


def test_a_fine_tune_resumes_without_its_parent_file(tmp_path, synthetic):
    """A run directory copied from another machine names a parent path of that machine: last.pt suffices."""
    import shutil

    from slimbench.compress import PruneConfig, prune

    parent = train(small_config(epochs=1), run_dir=tmp_path / "parent", progress=False, dataset=synthetic)
    prune(parent.model_path, PruneConfig(ratio=0.3), run_dir=tmp_path / "pruned", dataset=synthetic,
                   progress=False)
    cfg = small_config(epochs=2, init_from=str(tmp_path / "pruned" / "model.pt"))
    straight = train(cfg, run_dir=tmp_path / "a", progress=False, dataset=synthetic)
    with pytest.raises(TrainingInterrupted):
        train(cfg, run_dir=tmp_path / "b", progress=False, dataset=synthetic,
              on_epoch=lambda record: (_ for _ in ()).throw(KeyboardInterrupt))
    shutil.rmtree(tmp_path / "pruned")
    resumed = resume_training(tmp_path / "b", progress=False, dataset=synthetic)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    _, want = load_model(straight.model_path)
    _, got = load_model(resumed.model_path)
    assert got.structure == want.structure and got.metrics["params"] == want.metrics["params"] \
        < parent.metrics["params"]
    assert [(s["stage"], s.get("parent")) for s in got.lineage] == [(s["stage"], s.get("parent"))
                                                                    for s in want.lineage]
    assert [s["stage"] for s in got.lineage] == ["train", "prune", "train"]


def test_a_run_saved_on_another_kind_of_device_resumes_here(tmp_path, synthetic):
    """A GPU run's last.pt holds a CUDA generator state, which a CPU generator cannot take."""
    with pytest.raises(TrainingInterrupted):
        train(small_config(epochs=2), run_dir=tmp_path / "r", progress=False, dataset=synthetic,
              on_epoch=lambda record: (_ for _ in ()).throw(KeyboardInterrupt))
    payload = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    payload["resume"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    payload["resume"]["generator_device"] = "cuda"
    torch.save(payload, tmp_path / "r" / "last.pt")
    resumed = resume_training(tmp_path / "r", progress=False, dataset=synthetic)
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.metrics["device"].startswith("cpu")
    assert "epoch" not in resumed.metrics["device"]  # one device throughout: no spans
    assert resumed.metrics["precision"] == resumed.history[0]["precision"] in ("fp32", "bf16")


def test_existing_run_is_not_overwritten(tmp_path, synthetic):
    train(small_config(epochs=1), run_dir=tmp_path / "r", progress=False, dataset=synthetic)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(small_config(epochs=1), run_dir=tmp_path / "r", progress=False, dataset=synthetic)


def test_diverging_loss_stops_with_a_clear_error(tmp_path, synthetic):
    cfg = small_config(epochs=2, optimizer={"lr": 1e12, "nesterov": False}, schedule={"name": "constant"})
    with pytest.raises(TrainingError, match="loss became"):
        train(cfg, run_dir=tmp_path / "nan", progress=False, dataset=synthetic)


def test_distillation_and_fine_tuning_from_an_artifact(tmp_path, synthetic, monkeypatch):
    import slimbench.train.plots as plots

    legends: list[list[str]] = []
    real_save = plots.save_figure

    def remember_legend(fig, path):
        legends.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        real_save(fig, path)

    monkeypatch.setattr(plots, "save_figure", remember_legend)
    teacher = train(small_config(epochs=3), run_dir=tmp_path / "t", progress=False, dataset=synthetic)
    student = train(
        small_config(epochs=2, model={"model": "resnet20", "width": 0.25},
                     distill={"teacher": str(teacher.model_path), "temperature": 2.0}),
        run_dir=tmp_path / "s", progress=False, dataset=synthetic,
    )
    assert student.metrics["params"] < teacher.metrics["params"]
    # the student's train curve is the distillation mix, not the cross-entropy its validation curve shows
    assert legends[0][0] == "train (cross-entropy)"
    assert legends[1][0] == "train (0.9 x distillation + 0.1 x cross-entropy)"
    tuned = train(small_config(epochs=1, init_from=str(teacher.model_path), label_smoothing=0.1),
                  run_dir=tmp_path / "f", progress=False, dataset=synthetic)
    assert legends[2][0] == "train (cross-entropy with label smoothing 0.1)"
    _, artifact = load_model(tuned.model_path)
    assert [step["stage"] for step in artifact.lineage] == ["train", "train"]
    assert artifact.lineage[-1]["parent"] is not None


def test_schedules_shape():
    cosine = ScheduleConfig(name="cosine", warmup_epochs=1)
    assert lr_factor(cosine, 0, 10, 10) == pytest.approx(0.1)
    assert lr_factor(cosine, 9, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 99, 10, 10) < 0.01
    multistep = ScheduleConfig(name="multistep", milestones=[3, 6], gamma=0.1)
    assert [round(lr_factor(multistep, e * 10, 10, 10), 6) for e in (0, 3, 6)] == [1.0, 0.1, 0.01]
    onecycle = ScheduleConfig(name="onecycle", pct_start=0.25)
    assert lr_factor(onecycle, 0, 10, 10) == pytest.approx(0.04)
    assert lr_factor(onecycle, 25, 10, 10) == pytest.approx(1.0)
    triangle = ScheduleConfig(name="onecycle", pct_start=0.2, anneal="linear")
    assert [round(lr_factor(triangle, s, 10, 10), 3) for s in (10, 20, 60, 100)] == [0.52, 1.0, 0.5, 0.0]
    assert lr_factor(ScheduleConfig(name="step", step_size=2, gamma=0.5), 45, 10, 10) == 0.25


def test_norm_bias_lr_scale_moves_batch_norm_shifts_faster_and_only_them():
    from slimbench.models import build_model
    from slimbench.train.config import OptimizerConfig
    from slimbench.train.schedule import build_optimizer, set_lr

    def one_step(scale: float) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model({"model": "airnet", "widths": [8, 8, 16], "stem_channels": 12})
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        optimizer = build_optimizer(model, OptimizerConfig(lr=0.1, momentum=0.0, weight_decay=0.0,
                                                           norm_bias_lr_scale=scale))
        set_lr(optimizer, 0.01)
        torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
        optimizer.step()
        return {k: v.detach() - before[k] for k, v in model.named_parameters()}

    plain, scaled = one_step(1.0), one_step(64.0)
    shifts = [k for k in plain if k.endswith(("bn1.bias", "bn2.bias"))]
    assert len(shifts) == 6
    for key, moved in plain.items():
        expected = 64 * moved if key in shifts else moved
        torch.testing.assert_close(scaled[key], expected, rtol=1e-4, atol=1e-7)
    assert any(plain[k].abs().sum() > 0 for k in shifts)


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptimizer: {lrate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer\.lrate'"):
        load_config(TrainConfig, path)
    path.write_text("epochs: -1\n")
    with pytest.raises(ConfigError, match="key 'epochs'"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match="unknown model 'resnet7'"):
        load_config(TrainConfig, None, {"model": {"model": "resnet7"}})
    path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, path)
    assert load_config(TrainConfig, None, ["optimizer.lr=0.05", "epochs=3"]).optimizer.lr == 0.05


def test_committed_configs_validate():
    from pathlib import Path

    from slimbench.compress import PruneConfig

    for path in sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")):
        kind = PruneConfig if "_prune" in path.name else TrainConfig
        load_config(kind, path)


@pytest.mark.realdata
def test_short_real_cifar10_run(tmp_path, real_data_dir):
    cfg = small_config(epochs=2, batch_size=100, data={"name": "cifar10", "dir": str(real_data_dir),
                                                      "val_size": 500, "train_subset": 3000},
                       optimizer={"lr": 0.2}, schedule={"name": "onecycle"}, report_test_each_epoch=False)
    result = train(cfg, run_dir=tmp_path / "real", progress=False)
    assert result.metrics["train_images"] == 3000 and result.metrics["val_images"] == 500
    # 60 steps on 3,000 images: well above chance (0.10 +- 0.003 on 10,000 test images), far from trained
    assert 0.13 < result.metrics["test_acc"] < 1.0


def test_num_classes_follows_the_dataset_unless_set(tmp_path):
    from slimbench.data import make_synthetic

    hundred = make_synthetic(num_train=256, num_test=64, num_classes=100)
    result = train(small_config(epochs=1, data={"name": "synthetic", "val_size": 0}), run_dir=tmp_path / "a",
                   progress=False, dataset=hundred)
    _, artifact = load_model(result.model_path)
    assert artifact.spec["num_classes"] == 100
    with pytest.raises(ConfigError, match="num_classes is 10 but synthetic has 100"):
        train(small_config(epochs=1, model={"model": "resnet20", "num_classes": 10}), run_dir=tmp_path / "b",
              progress=False, dataset=hundred)


def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    """torchrun, 2 processes, gloo: each takes half of every batch; rank 0 alone writes a model that learned."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLIMBENCH_RUNS": str(tmp_path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "slimbench.cli", "train", "--model", "resnet20", "--dataset", "synthetic", "--epochs", "5",
               "--batch-size", "64", "--lr", "0.05", "--name", "ddp", "--no-progress",
               "--set", "model.width=0.5", "--set", "data.val_size=64", "--set", "threads=1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["ddp"]  # one run directory, agreed by both processes
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["test_acc"] > 0.4  # chance is 0.1
    assert len((runs[0] / "log.jsonl").read_text().splitlines()) == 5  # one writer


@pytest.mark.slow
def test_compiled_training_learns_and_saves_a_plain_model(tmp_path, synthetic):
    """`compile: true` (torch.compile, a minute of compiling on a CPU) trains and writes loadable weights."""
    result = train(small_config(epochs=6, compile=True), run_dir=tmp_path / "c", progress=False, dataset=synthetic)
    assert result.metrics["test_acc"] > 0.6  # chance is 0.1; the eager run of test_training_learns... gets there too
    model, artifact = load_model(result.model_path)
    assert not any(key.startswith("_orig_mod") for key in artifact.state)  # the eager model's names
    assert not hasattr(model, "_orig_mod")


def test_channels_last_is_used_unless_an_inner_convolution_is_too_thin(tmp_path, synthetic):
    """The image-reading stem has 3 input channels: it must not switch channels_last off for every model."""
    from slimbench.models import build_model
    from slimbench.train.loop import channels_last_is_safe

    assert channels_last_is_safe(build_model({"model": "resnet20"}))
    assert channels_last_is_safe(build_model({"model": "densenet121", "stem": "imagenet"}))
    assert not channels_last_is_safe(build_model({"model": "resnet20", "width": 0.25}))  # 4-channel projections
    from slimbench.train.loop import preferred_channels_last

    cpu = torch.device("cpu")  # `auto`: what trained fastest (BENCHMARKS section 1)
    assert preferred_channels_last(cpu, compiled=False) and not preferred_channels_last(cpu, compiled=True)
    result = train(small_config(epochs=1), run_dir=tmp_path / "cl", progress=False, dataset=synthetic)
    assert result.metrics["memory_format"] == "channels_last"
    result = train(small_config(epochs=1, channels_last=False), run_dir=tmp_path / "nchw", progress=False,
                   dataset=synthetic)
    assert result.metrics["memory_format"] == "contiguous"
    assert [json.loads(line)["memory_format"] for line in (tmp_path / "nchw" / "log.jsonl").read_text().splitlines()] \
        == ["contiguous"]


def test_a_resumed_run_reports_each_layout_it_trained_in():
    from slimbench.train.loop import describe_spans

    history = [{"epoch": 1}, {"epoch": 2}] + [{"epoch": e, "memory_format": "contiguous"} for e in (3, 4)] + [
        {"epoch": 5, "memory_format": "channels_last"}]
    assert describe_spans(history, "memory_format") == ("unrecorded (epochs 1-2), contiguous (epochs 3-4), "
                                                "channels_last (epoch 5)")
    assert describe_spans(history[2:4], "memory_format") == "contiguous"


def test_whitened_stem_decorrelates_the_first_layer(synthetic):
    from slimbench.data import normalize
    from slimbench.models import build_model
    from slimbench.train.whiten import whiten_first_conv

    model = build_model({"model": "resnet20"})
    conv = whiten_first_conv(model, synthetic.train_x[:256])
    with torch.no_grad():
        out = torch.nn.functional.conv2d(normalize(synthetic.train_x[256:512], channels_last=False), conv.weight)
    channels = out[:, :8].permute(1, 0, 2, 3).reshape(8, -1)  # the first half: one filter per eigenvector
    correlation = torch.corrcoef(channels)
    assert torch.allclose(channels.var(1), torch.ones(8), rtol=0.3)  # unit variance on unseen images
    assert (correlation - torch.eye(8)).abs().max() < 0.2
    assert torch.equal(conv.weight[8:], -conv.weight[:8])  # both signs survive the ReLU


def test_alternating_flips_show_each_image_both_ways(tmp_path, synthetic):
    """With alternate_flip, each image is mirrored in exactly one of any two consecutive epochs."""
    from slimbench.data import BatchAugmenter

    cfg = small_config(epochs=2, augment={"alternate_flip": True})
    trainer = _Trainer(cfg, tmp_path, synthetic)
    start = trainer.flip_start
    assert start is not None and 0.3 < start.float().mean() < 0.7
    augmenter = BatchAugmenter(crop_padding=0, channels_last=False)
    x, y = synthetic.train_x[:64], synthetic.train_y[:64]
    gen = torch.Generator().manual_seed(0)
    plain, _ = augmenter(x, y, gen, torch.zeros(64, dtype=torch.bool))
    even, _ = augmenter(x, y, gen, start[:64] ^ False)
    odd, _ = augmenter(x, y, gen, start[:64] ^ True)
    mirrored = plain.flip(3)
    for i in range(64):
        assert torch.equal(even[i], mirrored[i] if start[i] else plain[i])
        assert torch.equal(odd[i], plain[i] if start[i] else mirrored[i])


def test_zero_init_residual_starts_every_block_as_the_identity(tmp_path, synthetic):

    trainer = _Trainer(small_config(zero_init_residual=True), tmp_path, synthetic)
    ends = [m.bn2.weight for m in trainer.model.modules() if hasattr(m, "residual_end")]
    assert len(ends) == 9 and all(bool((w == 0).all()) for w in ends)  # ResNet-20: 3 stages of 3 blocks
    plain = _Trainer(small_config(), tmp_path / "plain", synthetic)
    assert all(bool((m.bn2.weight == 1).all()) for m in plain.model.modules() if hasattr(m, "residual_end"))
    with pytest.raises(ConfigError, match="declares no residual blocks"):
        _Trainer(small_config(model={"model": "mobilenetv2"}, zero_init_residual=True), tmp_path / "m", synthetic)


def test_a_validation_tie_goes_to_the_lower_validation_loss():
    assert is_better_epoch({"val_acc": 0.91, "val_loss": 0.9}, best_val=0.90, best_val_loss=0.1)
    assert not is_better_epoch({"val_acc": 0.89, "val_loss": 0.1}, best_val=0.90, best_val_loss=0.9)
    assert is_better_epoch({"val_acc": 0.90, "val_loss": 0.34}, best_val=0.90, best_val_loss=0.35)
    assert not is_better_epoch({"val_acc": 0.90, "val_loss": 0.35}, best_val=0.90, best_val_loss=0.35)  # first kept
    assert is_better_epoch({"val_acc": 0.0, "val_loss": 9.0}, best_val=-1.0, best_val_loss=float("inf"))


def test_a_teacher_for_other_classes_is_refused_before_training(tmp_path, synthetic):
    from slimbench.artifact import Artifact, save_artifact
    from slimbench.models import build_model

    spec = {"model": "resnet20", "width": 0.25, "num_classes": 100}
    save_artifact(Artifact.from_model(spec, build_model(spec)), tmp_path / "teacher.pt")
    config = small_config(epochs=1, distill={"teacher": str(tmp_path / "teacher.pt")})
    with pytest.raises(ConfigError, match="scores 100 classes; synthetic has 10"):
        train(config, run_dir=tmp_path / "run", progress=False, dataset=synthetic)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_the_teacher_takes_the_eager_layout_and_scores_as_it_would_contiguous(tmp_path, synthetic):
    from slimbench.artifact import Artifact, save_artifact
    from slimbench.models import build_model

    spec = {"model": "resnet20", "width": 0.5}
    torch.manual_seed(0)
    save_artifact(Artifact.from_model(spec, build_model(spec)), tmp_path / "teacher.pt")
    config = small_config(epochs=1, channels_last=False, precision="fp32",
                          distill={"teacher": str(tmp_path / "teacher.pt")})
    trainer = _Trainer(config, tmp_path / "run", synthetic)
    assert not trainer.channels_last  # the student as asked
    assert trainer.teacher_channels_last  # the teacher runs eager on a CPU: channels_last
    conv = next(m for m in trainer.teacher.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 32, 32)
    reference, _ = load_model(tmp_path / "teacher.pt")
    with torch.no_grad():
        expected = reference.eval()(images)
        got = trainer.teacher(trainer._teacher_input(images))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_a_contiguous_student_is_evaluated_as_a_channels_last_copy(tmp_path, synthetic):
    from slimbench.measure.accuracy import evaluate

    trainer = _Trainer(small_config(channels_last=False, precision="fp32"), tmp_path / "run", synthetic)
    assert not trainer.channels_last and trainer.eval_channels_last  # eager evaluation on a CPU: channels_last
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    other = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}  # as an average would be
    x, y = synthetic.test_x, synthetic.test_y
    for state in (None, other):
        got = trainer._evaluation(x, y, state)
        reference = _Trainer(small_config(channels_last=False, precision="fp32"), tmp_path / "ref", synthetic).model
        if state is not None:
            reference.load_state_dict(state)
        expected = evaluate(reference, x, y, synthetic.num_classes, channels_last=False)
        assert got.accuracy == expected.accuracy and got.loss == pytest.approx(expected.loss, rel=1e-4)
    conv = trainer.model.conv1.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)  # left as it trains
    assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())


def test_precise_bn_sets_the_statistics_from_training_images_and_leaves_training_alone(tmp_path, synthetic):
    from slimbench.data import normalize, split_dataset

    plain = {"augment": {"crop_padding": 0, "flip": False}, "select": "last", "epochs": 2}
    without = train(small_config(**plain), run_dir=tmp_path / "a", progress=False, dataset=synthetic)
    # the whole training split (448 images, seven batches of 64): the mean of the batch means is the mean
    precise = train(small_config(**plain, precise_bn=448), run_dir=tmp_path / "b", progress=False, dataset=synthetic)
    assert [h["train_loss"] for h in precise.history] == [h["train_loss"] for h in without.history]
    model, _ = load_model(precise.model_path)
    train_idx = split_dataset(synthetic, 64, 0).train_idx
    with torch.no_grad():
        first = model.eval().conv1(normalize(synthetic.train_x[train_idx], channels_last=False))
    expected = first.mean(dim=(0, 2, 3))
    assert torch.allclose(model.bn1.running_mean, expected, atol=1e-5)
    moving, _ = load_model(without.model_path)
    assert not torch.allclose(moving.bn1.running_mean, expected, atol=1e-3)
    with pytest.raises(ValueError, match="precise_bn"):
        small_config(precise_bn=256, ema_decay=0.99)


def test_fresh_weights_keep_the_parents_structure_masks_and_lineage_not_its_weights(tmp_path, trained, synthetic):
    """Scratch training of a pruned structure (Liu et al. 2019): the pruned shape, the recorded masks and the
    lineage come from init_from, the weights are drawn anew, so the learned 0.9+ accuracy is gone."""
    from slimbench.compress import PruneConfig, prune
    from slimbench.models.common import reinitialize

    slim = prune(trained, PruneConfig(ratio=0.3), run_dir=tmp_path / "slim", dataset=synthetic, progress=False)
    sparse = prune(slim.model_path, PruneConfig(kind="unstructured", ratio=0.5, scope="layer", exclude=["conv1"]),
                   run_dir=tmp_path / "sparse", dataset=synthetic, progress=False)
    parent_model, parent = load_model(sparse.model_path)
    # lr ~0: the run ends where it started, at the fresh weights
    fresh = train(small_config(epochs=1, init_from=str(sparse.model_path), fresh_weights=True, seed=3,
                               optimizer={"lr": 1e-9, "weight_decay": 0.0}),
                  run_dir=tmp_path / "fresh", progress=False, dataset=synthetic)
    model, artifact = load_model(fresh.model_path)
    assert artifact.structure == parent.structure
    assert [s["stage"] for s in artifact.lineage] == ["train", "prune", "prune", "train"]
    assert artifact.lineage[-1]["config"]["fresh_weights"] is True
    assert artifact.masks.keys() == parent.masks.keys() and artifact.masks
    for name, mask in artifact.masks.items():
        assert torch.count_nonzero(artifact.state[name][~mask.bool()]) == 0, name
    assert load_model(trained)[1].metrics["test_acc"] > 0.9 and fresh.metrics["test_acc"] < 0.4  # chance is 0.1
    torch.manual_seed(3)
    expected = reinitialize(parent_model)
    for name, weight in expected.state_dict().items():
        if name.endswith("conv1.weight") or name == "fc.weight":
            mask = parent.masks.get(name)
            want = weight * mask.view_as(weight) if mask is not None else weight
            assert torch.allclose(model.state_dict()[name], want, atol=1e-5), name
            assert not torch.allclose(want, parent.state[name], atol=1e-3), name
    # what follows it inherits its recipe, not its fresh start: a fine-tune goes on from the weights it has
    learned = train(small_config(epochs=1, init_from=str(sparse.model_path), fresh_weights=True, seed=3),
                    run_dir=tmp_path / "learned", progress=False, dataset=synthetic)
    artifact = load_model(learned.model_path)[1]
    tuned = prune(learned.model_path, PruneConfig(kind="unstructured", ratio=0.6, scope="layer", exclude=["conv1"],
                                                finetune={"epochs": 1, "optimizer": {"lr": 1e-9}}),
                  run_dir=tmp_path / "tuned", dataset=synthetic, progress=False)
    _, after = load_model(tuned.model_path)
    assert torch.allclose(after.state["conv1.weight"], artifact.state["conv1.weight"], atol=1e-5)


def test_fresh_weights_need_a_float_model_to_take_the_structure_from(tmp_path, trained, synthetic):
    from slimbench.compress.quantize import QuantizeConfig, quantize

    with pytest.raises(ConfigError, match="fresh_weights keeps the structure of init_from"):
        train(small_config(epochs=1, fresh_weights=True), run_dir=tmp_path / "a", progress=False, dataset=synthetic)
    half = quantize(trained, QuantizeConfig(mode="fp16"), tmp_path / "half", dataset=synthetic)
    with pytest.raises(ConfigError, match=r"is quantized .*start from its float parent"):
        train(small_config(epochs=1, init_from=str(half.path), fresh_weights=True), run_dir=tmp_path / "b",
              progress=False, dataset=synthetic)
