from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from slimbench.cli import app

runner = CliRunner()


def slimbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed entry point, as a user runs it (errors handled by main())."""
    return subprocess.run([sys.executable, "-m", "slimbench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_train_eval_and_runs_end_to_end(tmp_path):
    runs_root = tmp_path / "runs"
    result = runner.invoke(app, ["train", "--model", "resnet20", "--dataset", "synthetic", "--epochs", "2",
                                 "--set", "model.width=0.5", "--set", "data.val_size=64", "--set", "batch_size=64",
                                 "--name", "cli", "--runs-root", str(runs_root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    model_path = runs_root / "cli" / "model.pt"
    assert model_path.exists()
    listing = runner.invoke(app, ["runs", "--root", str(runs_root), "--json"])
    rows = json.loads(listing.output)
    assert rows[0]["name"] == "cli" and rows[0]["status"] == "done"


def test_eval_writes_a_confusion_matrix(tmp_path):
    runs_root = tmp_path / "runs"
    runner.invoke(app, ["train", "--dataset", "synthetic", "--epochs", "1", "--set", "model.width=0.5",
                        "--set", "data.val_size=64", "--name", "e", "--runs-root", str(runs_root), "--no-progress"])
    out = tmp_path / "cm.png"
    result = runner.invoke(app, ["eval", str(runs_root / "e" / "model.pt"), "--split", "val", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["count"] == 64 and len(report["per_class"]) == 10
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet99", "--dataset", "synthetic"], "unknown model 'resnet99'"),
        (["train", "--dataset", "synthetic", "--set", "optimizer.lrate=1"], "unknown key 'optimizer.lrate'"),
        (["train", "--data-dir", "/nonexistent/cifar"], "data folder /nonexistent/cifar does not exist"),
        (["eval", "/nonexistent/model.pt"], "does not exist"),
        (["train", "--resume", "/nonexistent/run"], "no last.pt to resume from"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path):
    proc = slimbench(*args, env={"SLIMBENCH_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_models_lists_the_zoo():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "resnet20" in result.output and "272,474" in result.output and "densenet121" in result.output


def test_resume_extends_a_finished_run(tmp_path):
    runs_root = tmp_path / "runs"
    common = ["--set", "model.width=0.5", "--set", "data.val_size=64", "--runs-root", str(runs_root), "--no-progress"]
    first = runner.invoke(app, ["train", "--dataset", "synthetic", "--epochs", "1", "--name", "r", *common])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(runs_root / "r"), "--epochs", "2", "--no-progress"])
    assert again.exit_code == 0, again.output
    log = (runs_root / "r" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_a_moved_distilled_run_resumes_with_its_teacher_named(tmp_path):
    """A run directory copied elsewhere names its teacher where it was; --teacher says where it is now."""
    from slimbench.artifact import Artifact, save_artifact
    from slimbench.models import build_model

    spec = {"model": "resnet20", "width": 0.25}
    save_artifact(Artifact.from_model(spec, build_model(spec)), tmp_path / "old" / "teacher.pt")
    runs_root = tmp_path / "runs"
    first = runner.invoke(app, ["train", "--dataset", "synthetic", "--epochs", "1", "--name", "r", "--no-progress",
                                "--set", "model.width=0.25", "--set", "data.val_size=64", "--runs-root",
                                str(runs_root), "--set", f"distill.teacher={tmp_path / 'old' / 'teacher.pt'}"])
    assert first.exit_code == 0, first.output
    (tmp_path / "old" / "teacher.pt").rename(tmp_path / "teacher.pt")
    lost = slimbench("train", "--resume", str(runs_root / "r"), "--epochs", "2", "--no-progress")
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1 and "--teacher PATH" in lost.stderr, lost.stderr
    again = runner.invoke(app, ["train", "--resume", str(runs_root / "r"), "--epochs", "2", "--no-progress",
                                "--teacher", str(tmp_path / "teacher.pt")])
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["epoch"] for line in (runs_root / "r" / "log.jsonl").read_text().splitlines()] == [1, 2]
    # the new place is written into the run's config: a later resume needs no --teacher
    later = runner.invoke(app, ["train", "--resume", str(runs_root / "r"), "--epochs", "3", "--no-progress"])
    assert later.exit_code == 0, later.output
    wrong = slimbench("train", "--resume", str(runs_root / "r"), "--teacher", str(tmp_path / "nowhere.pt"))
    assert wrong.returncode == 2 and "nowhere.pt, does not exist" in wrong.stderr, wrong.stderr
    alone = slimbench("train", "--dataset", "synthetic", "--teacher", str(tmp_path / "teacher.pt"))
    assert alone.returncode == 2 and "--teacher goes with --resume" in alone.stderr, alone.stderr
    # a relative --teacher is stored resolved, so that a resume from another directory finds it
    moved = runner.invoke(app, ["train", "--resume", str(runs_root / "r"), "--epochs", "4", "--no-progress",
                                "--teacher", os.path.relpath(tmp_path / "teacher.pt")])
    assert moved.exit_code == 0, moved.output
    stored = yaml.safe_load((runs_root / "r" / "config.yaml").read_text())["distill"]["teacher"]
    assert stored == str((tmp_path / "teacher.pt").resolve())
    plain = runner.invoke(app, ["train", "--dataset", "synthetic", "--epochs", "1", "--name", "p", "--no-progress",
                                "--set", "model.width=0.25", "--set", "data.val_size=64", "--runs-root", str(runs_root)])
    assert plain.exit_code == 0, plain.output
    stray = slimbench("train", "--resume", str(runs_root / "p"), "--teacher", str(tmp_path / "teacher.pt"))
    assert stray.returncode == 2 and "this run does not distil" in stray.stderr, stray.stderr


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_saves_and_says_how_to_resume(tmp_path, stop):
    """SIGTERM (`kill`, a scheduler's preemption; background jobs ignore SIGINT) stops as cleanly as Ctrl-C."""
    import signal
    import time

    from slimbench.runs import DB_NAME, ResultsStore

    runs_root = tmp_path / "runs"
    # a test suite started in the background (`nohup make test &`) hands its children SIGINT ignored, and Python
    # then keeps it ignored: the child restores Ctrl-C's usual handler before the CLI starts (in the child itself,
    # not in a preexec_fn, which would run Python between fork and exec in a process with JAX's threads)
    ctrl_c_as_usual = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                       "sys.argv[0] = 'slimbench'; runpy.run_module('slimbench.cli', run_name='__main__')")
    proc = subprocess.Popen(
        # epochs of a few steps each: enough of them that the run is still going when the signal comes, however
        # late a loaded machine lets this process poll
        [sys.executable, "-c", ctrl_c_as_usual, "train", "--dataset", "synthetic", "--epochs", "2000", "--name", "c",
         "--set", "model.width=0.5", "--set", "data.val_size=64", "--runs-root", str(runs_root), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        log = runs_root / "c" / "log.jsonl"
        deadline = time.time() + 240
        while time.time() < deadline and not (log.exists() and log.read_text().strip()):
            time.sleep(0.2)
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "resume with" in err
    assert (runs_root / "c" / "last.pt").exists()
    assert ResultsStore(runs_root / DB_NAME).runs(1)[0].status == "interrupted"


def test_demo_runs_the_whole_pipeline(tmp_path, host_profile):
    """`make demo` end to end (train, prune + fine-tune, int8 export, score) on a tiny CIFAR-10-format folder,
    on both CPU classes: bf16 training and a VNNI int8 export of a barely trained model (near-tied logits) once
    failed the parity gate on AVX-512-BF16 machines only."""
    import dataclasses

    from slimbench.data import make_synthetic
    from slimbench.data.cifar import write_binary_batches

    data = dataclasses.replace(make_synthetic(num_train=600, num_test=100), name="cifar10")
    write_binary_batches(data, tmp_path / "cifar-10-batches-bin")
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path / "cifar-10-batches-bin"), "--epochs", "1",
                                      "--train-images", "400", "--val-images", "100"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "int8 ONNX" in text and "score" in text, text


def test_interruption_prints_the_hint_of_whoever_drove_the_trainer(monkeypatch, capsys, tmp_path):
    """main() shows the interruption's own message (the pipelines write theirs) on one line, exit 130."""
    from slimbench import cli
    from slimbench.train import TrainingInterrupted

    run_dir = tmp_path / "a [long] path" / "with spaces that would wrap a narrow terminal" / ("x" * 80)

    def interrupted(**_):
        raise TrainingInterrupted("raw", run_dir, 3).continue_with("run the same command again")

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 130 and err.count("\n") == 1
    assert f"3 epoch(s) are saved in {run_dir}: run the same command again" in err
