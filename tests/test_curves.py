"""`slimbench curves`: validation curves of training runs side by side, read from their logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimbench.cli import app
from slimbench.errors import ConfigError
from slimbench.study.curves import load_curves, read_curve


def _log(path: Path, val: list[float], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"epoch": epoch, "train_loss": 1.0, "val_acc": acc}) for epoch, acc in enumerate(val, 1)]
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


def test_sources_of_every_kind_give_their_curves_under_distinct_names(tmp_path):
    _log(tmp_path / "runs/a/log.jsonl", [0.5, 0.7])
    _log(tmp_path / "kept/b/log.jsonl", [0.6])
    (tmp_path / "kept/b/model.pt").write_bytes(b"")
    _log(tmp_path / "stages/prune-1/prune/step1/finetune/log.jsonl", [0.4])
    _log(tmp_path / "stages/prune-1/prune/step2/finetune/log.jsonl", [0.45, 0.46])
    _log(tmp_path / "stages/quantize-2/qat/finetune/log.jsonl", [0.3])
    curves = load_curves([str(tmp_path / "runs/a"), str(tmp_path / "kept/b/model.pt"),
                          f"steps={tmp_path / 'stages/prune-1'}", str(tmp_path / "stages/quantize-2")])
    assert [c.label for c in curves] == ["a", "b", "steps (prune/step1/finetune)", "steps (prune/step2/finetune)",
                                         "quantize-2"]
    assert curves[0].epochs == [1, 2] and curves[0].val_acc == [0.5, 0.7] and curves[3].best == (2, 0.46)


def test_a_resumed_epoch_keeps_its_last_record_and_a_line_being_written_is_left_out(tmp_path):
    resumed = json.dumps({"epoch": 2, "val_acc": 0.58})  # resumed from epoch 1's checkpoint, epoch 2 again
    log = _log(tmp_path / "log.jsonl", [0.5, 0.6, 0.55], tail=resumed + '\n{"epoch": 3, "val_a')
    curve = read_curve(log, "x")
    assert curve.epochs == [1, 2, 3] and curve.val_acc == [0.5, 0.58, 0.55]
    assert curve.best == (2, 0.58)


def test_the_selected_epoch_is_the_earliest_of_equals():
    from slimbench.study.curves import Curve

    assert Curve("x", Path("log.jsonl"), [1, 2, 3], [0.7, 0.9, 0.9]).best == (2, 0.9)
    assert Curve("x", Path("log.jsonl"), [], []).best is None


def test_a_broken_record_or_a_source_without_a_log_is_a_clear_error(tmp_path):
    log = _log(tmp_path / "run/log.jsonl", [0.5, 0.6])
    log.write_text(log.read_text().replace('"epoch": 1', '"epoch: 1'))
    with pytest.raises(ConfigError, match=r"log.jsonl:1: not a training log record"):
        load_curves([str(tmp_path / "run")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no training log \(log.jsonl\)"):
        load_curves([str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_curves([str(tmp_path / "nowhere")])


def test_cli_prints_each_epoch_and_the_selected_one_and_draws_the_plot(tmp_path):
    _log(tmp_path / "ref/log.jsonl", [0.80, 0.90, 0.85])
    _log(tmp_path / "new/log.jsonl", [0.82, 0.84])
    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["curves", f"reference={tmp_path / 'ref'}", str(tmp_path / "new"),
                                      "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line.strip()}
    assert rows["1"] == ["80.00", "82.00"] and rows["3"] == ["85.00"]
    assert rows["selected"] == ["90.00", "(2)", "84.00", "(2)"]
    assert "reference" in result.output and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_source_is_one_line_and_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "slimbench.cli", "curves", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "no training log" in lines[0]


def test_stage_curves_are_named_by_experiment_and_by_stage_and_step_where_one_trains_twice(tmp_path):
    from slimbench.study.curves import stage_curves
    from slimbench.study.runner import StageState

    _log(tmp_path / "prune-1/step1/finetune/log.jsonl", [0.4])
    _log(tmp_path / "prune-1/step2/finetune/log.jsonl", [0.5])
    _log(tmp_path / "quantize-2/qat/finetune/log.jsonl", [0.6])
    _log(tmp_path / "quantize-3/qat/finetune/log.jsonl", [0.7])
    states = [StageState("kept", 0, "checkpoint", "", tmp_path / "kept/model.pt", "given"),
              StageState("a", 1, "prune", "k1", tmp_path / "prune-1", "done"),
              StageState("a", 2, "quantize", "k2", tmp_path / "quantize-2", "running"),
              StageState("b", 1, "quantize", "k3", tmp_path / "quantize-3", "interrupted"),
              StageState("b", 2, "export", "k4", tmp_path / "export-4", "pending")]
    assert [c.label for c in stage_curves(states)] == ["a (1. prune step1)", "a (1. prune step2)", "a (2. quantize)",
                                                       "b"]


def test_study_status_draws_its_rows_curves_beside_a_reference(tmp_path):
    import yaml

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "data": {"name": "synthetic"}, "experiments": [
        {"name": "a", "stages": [{"train": {"model": {"model": "resnet20", "width": 0.25}, "epochs": 3}}]}]}))
    _log(tmp_path / "ref/log.jsonl", [0.5, 0.6])
    runner = CliRunner()
    plot = tmp_path / "status.png"
    args = ["study", "status", str(study), "--out", str(tmp_path / "out"), "--curves", str(plot)]
    result = runner.invoke(app, [*args, "--against", f"ref={tmp_path / 'ref'}"])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the reference alone: the row has not started
    from slimbench.study import load_study, study_status

    plot.unlink()
    stage_dir = study_status(load_study(study), tmp_path / "out")[0].directory
    _log(stage_dir / "log.jsonl", [0.3])  # the row's first epoch, as its trainer logs it
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and f"curves: {plot}" in result.output.replace("\n", ""), result.output
    assert plot.is_file()
    result = runner.invoke(app, [*args, "--against", str(tmp_path / "nowhere")])
    assert isinstance(result.exception, ConfigError) and "no such file or directory" in str(result.exception)
