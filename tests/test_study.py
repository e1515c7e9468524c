"""Studies: run, resume without redoing finished stages, smoke mode, Ray, compare and the HTML report."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slimbench.cli import app
from slimbench.errors import ConfigError
from slimbench.study import (
    Study,
    load_rows,
    load_study,
    merge_studies,
    pareto_front,
    plotted_front,
    run_study,
    study_status,
    to_csv,
    to_markdown,
    write_report,
)
from slimbench.study import runner as study_runner

ROOT = Path(__file__).resolve().parents[1]

TWO = {
    "name": "two",
    "data": {"name": "synthetic"},
    "experiments": [
        {"name": "base", "reported": {"source": "a made-up paper", "test_acc": 0.5, "params": 70000},
         "stages": [{"train": {"model": {"model": "resnet20", "width": 0.25}, "epochs": 2, "batch_size": 64,
                               "data": {"val_size": 64}}},
                    {"prune": {"kind": "structured", "ratio": 0.3}}]},
        {"name": "student", "from": "base",
         "stages": [{"train": {"model": {"model": "resnet20", "width": 0.25}, "epochs": 1, "batch_size": 64,
                               "data": {"val_size": 64}, "optimizer": {"lr": 0.01},
                               "distill": {"teacher": "@base"}}},
                    {"export": {"parity_images": 64, "latency": False}}]},
    ],
}


def _run(tmp_path, synthetic, **kwargs):
    return run_study(Study.model_validate(TWO), tmp_path / "study", dataset=synthetic, progress=False,
                     log=lambda _: None, **kwargs)


def test_an_interrupted_training_stage_says_run_the_study_again(tmp_path, synthetic, interrupt_next_training):
    from slimbench.train import TrainingInterrupted

    with pytest.raises(TrainingInterrupted, match=r"1 epoch.* run the study again") as caught:
        _run(tmp_path, synthetic, only=["base"])
    assert "--resume" not in str(caught.value)
    [row] = _run(tmp_path, synthetic, only=["base"])
    assert row["experiment"] == "base"


def test_two_experiments_run_then_resume_without_redoing(tmp_path, synthetic, monkeypatch):
    calls = []
    real = study_runner._run_stage

    def counting(kind, *args, **kwargs):
        calls.append(kind)
        if kind == "export" and len(calls) == 4 and not getattr(counting, "failed", False):
            counting.failed = True
            raise KeyboardInterrupt  # the study is interrupted in its last stage
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(study_runner, "_run_stage", counting)
    study = Study.model_validate(TWO)
    assert [s.state for s in study_status(study, tmp_path / "study")] == ["pending"] * 4
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, synthetic)
    assert calls == ["train", "prune", "train", "export"]
    done = sorted(p.parent.name.split("-")[0] for p in (tmp_path / "study" / "stages").glob("*/done.json"))
    assert done == ["prune", "train", "train"]
    # what was finished before the interruption is already in results.json, and status reads the rest from disk
    assert [r["experiment"] for r in load_rows([tmp_path / "study"])] == ["base"]
    page = write_report(tmp_path / "study").read_text()
    assert "Partial:</b> 1 of 2" in page and "student" in page
    states = study_status(study, tmp_path / "study")
    assert [(s.experiment, s.kind, s.state) for s in states] == [
        ("base", "train", "done"), ("base", "prune", "done"), ("student", "train", "done"),
        ("student", "export", "interrupted")]
    assert states[0].epochs_done == states[0].epochs_planned == 2 and states[0].val_acc is not None
    assert states[2].epochs_done == 1 and states[3].seconds_left is None
    assert [s.experiment for s in study_status(study, tmp_path / "study", only=["base"])] == ["base", "base"]
    rows = _run(tmp_path, synthetic)
    assert calls == ["train", "prune", "train", "export", "export"]  # only the unfinished stage ran again
    assert [r["experiment"] for r in rows] == ["base", "student"]
    base, student = rows
    assert base["stages"] == ["train", "prune"] and base["ps"] > 0.2
    assert student["model_path"].endswith(".onnx") and student["params"] == base["params"]
    assert all(r["score"] > 0 and 0 <= r["test_acc"] <= 1 for r in rows)
    _run(tmp_path, synthetic)
    assert len(calls) == 5  # a finished study runs nothing
    _run(tmp_path, synthetic, only=["base"])  # a partial re-run keeps the other experiments' rows
    assert [r["experiment"] for r in load_rows([tmp_path / "study"])] == ["base", "student"]
    assert {s.state for s in study_status(study, tmp_path / "study")} == {"done"}
    changed = json.loads(json.dumps(TWO))
    changed["experiments"][0]["stages"][1]["prune"]["ratio"] = 0.5
    run_study(Study.model_validate(changed), tmp_path / "study", dataset=synthetic, progress=False,
              log=lambda _: None, only=["base"])
    rows = load_rows([tmp_path / "study"])  # student was made from the old base: its row is stale, dropped
    assert [r["experiment"] for r in rows] == ["base"] and rows[0]["ps"] > 0.4


def test_status_command_lists_every_stage(tmp_path):
    study_file = tmp_path / "two.yaml"
    study_file.write_text(yaml.safe_dump(TWO))
    result = CliRunner().invoke(app, ["study", "status", str(study_file), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.output.count("pending") == 5 and "0/2" in result.output and "4 pending" in result.output
    result = CliRunner().invoke(app, ["study", "status", str(study_file), "--only", "nobody"])
    assert result.exit_code != 0


def test_status_keeps_long_names_whole_where_they_differ_at_the_end(tmp_path, monkeypatch):
    long = "base-pruned30-then50-r8-sparse40-l3w3a3-e40-gradual70-actmse-seed"
    study = json.loads(json.dumps(TWO))
    twin = json.loads(json.dumps(study["experiments"][0]))
    study["experiments"] = [{**study["experiments"][0], "name": long + "2"}, {**twin, "name": long + "3"}]
    study_file = tmp_path / "long.yaml"
    study_file.write_text(yaml.safe_dump(study))
    # a terminal of 120 columns (or wide checkpoint paths in the last column): rich would cut the first column
    # to "...-gradual70-…" in both rows
    from rich.console import Console

    from slimbench import cli

    monkeypatch.setattr(cli, "console", Console(width=120))
    result = CliRunner().invoke(app, ["study", "status", str(study_file), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert long + "2 " in result.output and long + "3 " in result.output


def test_changed_stage_reruns_it_and_what_follows(tmp_path, synthetic):
    _run(tmp_path, synthetic, only=["base"])
    changed = json.loads(json.dumps(TWO))
    changed["experiments"][0]["stages"][1]["prune"]["ratio"] = 0.5
    stages = tmp_path / "study" / "stages"
    before = {p.name for p in stages.iterdir()}
    run_study(Study.model_validate(changed), tmp_path / "study", dataset=synthetic, progress=False,
              log=lambda _: None, only=["base"])
    added = {p.name for p in stages.iterdir()} - before
    assert [name.split("-")[0] for name in added] == ["prune"]  # the train stage is shared


def test_compare_and_report(tmp_path, synthetic):
    _run(tmp_path, synthetic)
    study_dir = tmp_path / "study"
    rows = load_rows([study_dir])
    assert {r["experiment"] for r in rows} == {"base", "student"}
    assert "| base |" in to_markdown(rows) and to_csv(rows).count("\n") == 3
    result = CliRunner().invoke(app, ["compare", str(study_dir), "--format", "markdown", "--plots",
                                      str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert "base" in result.output and "student" in result.output
    assert (tmp_path / "plots" / "accuracy_vs_params.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "accuracy_vs_macs.svg").is_file()
    # flash and RAM at the stored bits: the pruned float model of `base`, against the unpruned width-0.25 net
    from slimbench.measure import measure

    base = next(r for r in rows if r["experiment"] == "base")
    memory = measure(base["model_path"])["memory"]
    assert (base["flash_bytes"], base["peak_ram_bytes"]) == (memory["flash_bytes"], memory["peak_ram_bytes"])
    assert 0 < base["peak_ram_bytes"] < 4 * 3 * 8 * 32 * 32  # below three width-8 fp32 maps at 32x32
    for key in ("flash_bytes", "peak_ram_bytes"):
        assert (tmp_path / "plots" / f"accuracy_vs_{key}.png").stat().st_size > 10_000
    # two model files whose last two path parts agree get labels that tell them apart
    import shutil

    for study in ("one", "two"):
        (tmp_path / study / "w4a4").mkdir(parents=True)
        shutil.copy(base["model_path"], tmp_path / study / "w4a4" / "model.pt")
    files = load_rows([tmp_path / "one" / "w4a4" / "model.pt", tmp_path / "two" / "w4a4" / "model.pt"])
    assert [r["experiment"] for r in files] == ["one/w4a4/model.pt", "two/w4a4/model.pt"]
    named = CliRunner().invoke(app, ["compare", f"pruned, w/ 30%={tmp_path / 'one' / 'w4a4' / 'model.pt'}",
                                     str(tmp_path / "two" / "w4a4" / "model.pt"), "--format", "markdown"])
    assert named.exit_code == 0, named.output
    assert "| pruned, w/ 30% |" in named.output and "w4a4/model.pt" in named.output  # a label, and a path unnamed
    with pytest.raises(ConfigError, match="a label names a model file"):
        load_rows([f"mine={study_dir}"])
    page = write_report(study_dir)

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.images, self.tables, self.cells = [], 0, []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.images.append(dict(attrs))
            self.tables += tag == "table"

        def handle_data(self, data):
            self.cells.append(data)

    parser = Collect()
    parser.feed(page.read_text())
    assert len(parser.images) >= 4 and all(i["src"].startswith("data:image/png;base64,") for i in parser.images)
    assert parser.tables >= 2 and "a made-up paper" in parser.cells
    assert "MODEL_CARD" in page.read_text() or "Model card" in page.read_text()
    assert "http" not in "".join(i["src"][:30] for i in parser.images)
    assert "Partial" not in page.read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path, synthetic):
    """What a user sees: the page opens offline in a real browser and shows its plots (not a blank page)."""
    import shutil
    import subprocess

    import numpy as np
    from matplotlib.image import imread

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium (apt install chromium)")
    _run(tmp_path, synthetic)
    page = write_report(tmp_path / "study")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # anti-aliased plots and text, not an empty or error page
    rows_with_ink = (pixels.min(axis=(1, 2)) < 0.5).sum()
    assert rows_with_ink > 1000  # tables and plots fill the page


def test_smoke_shrinks_every_stage(tmp_path, synthetic):
    rows = run_study(Study.model_validate(TWO), tmp_path / "smoke", smoke=True, dataset=synthetic, progress=False,
                     log=lambda _: None, only=["base"])
    log = next((tmp_path / "smoke" / "stages").glob("train-*/log.jsonl")).read_text().splitlines()
    assert len(log) == 1 and rows[0]["experiment"] == "base"
    compiled = {"epochs": 50, "compile": True, "schedule": {"milestones": [30]}}
    assert study_runner.smoke_config("train", compiled)["compile"] is False  # a minute of compiling saved
    # a parent trained on the full data holds out 5,000 images, more than the smoke slice has: the smoke
    # fine-tune holds out the smoke validation size instead
    assert study_runner.smoke_config("prune", {"finetune": compiled})["finetune"] == {
        **compiled, "epochs": 1, "compile": False, "data": {"val_size": 64}}


def test_a_study_model_card_says_how_to_remake_it(tmp_path, synthetic):
    """Not "(commands not recorded)": the card of an export stage names the study file and the experiment."""
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(TWO))
    run_study(load_study(path), tmp_path / "out", smoke=True, dataset=synthetic, progress=False, log=lambda _: None)
    [card] = (tmp_path / "out" / "stages").glob("export-*/MODEL_CARD.md")
    assert f"slimbench study run {path} --only student --out {tmp_path / 'out'} --smoke" in card.read_text()
    assert Study.model_validate(TWO).run_command("student", tmp_path) == (
        f"run_study(<study two>, {str(tmp_path)!r}, smoke=False, only=['student'])")


def test_study_file_errors(tmp_path):
    bad = json.loads(json.dumps(TWO))
    bad["experiments"][1]["stages"][0]["train"]["distill"]["teacher"] = "@nobody"
    with pytest.raises(ValueError, match="unknown experiment"):
        Study.model_validate(bad)
    bad = json.loads(json.dumps(TWO))
    bad["experiments"][0]["stages"].append({"fly": {}})
    with pytest.raises(ValueError, match="must be one of"):
        Study.model_validate(bad)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TWO, "experiment": []}))
    with pytest.raises(ConfigError):
        load_study(path)


@pytest.mark.parametrize(("stage", "key", "where"), [
    ({"export": {"parity_images": 64, "latencyy": False}}, "latencyy", "stage 3 (export)"),
    ({"prune": {"ratio": 0.3, "finetune": {"epochz": 2}}}, "finetune.epochz", "stage 3 (prune)"),
    ({"quantize": {"mode": "qat", "weight_bits": 9}}, "weight_bits", "stage 3 (quantize)"),
])
def test_a_misspelled_key_in_the_last_stage_fails_before_anything_trains(tmp_path, stage, key, where):
    import time

    bad = json.loads(json.dumps(TWO))
    bad["experiments"][1]["stages"].append(stage)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "slimbench.cli", "study", "run", str(path), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    # nothing was written, so nothing trained; the time only bounds the interpreter, torch's import and the check,
    # which took just over 5 s on the AVX2 class beside another xdist worker
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert time.perf_counter() - started < 20
    [line] = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert line.startswith("error:") and "experiment 'student'" in line and where in line and repr(key) in line
    with pytest.raises(ConfigError, match="experiment 'student'"):  # the Python API checks before running too
        run_study(Study.model_validate(bad), tmp_path / "out2", progress=False, log=lambda _: None)
    assert not (tmp_path / "out2").exists()


def test_a_torchscript_export_stage_gives_a_row(tmp_path, synthetic):
    study = json.loads(json.dumps(TWO))
    study["experiments"][1]["stages"][1] = {"export": {"format": "torchscript", "parity_images": 32}}
    base, student = run_study(Study.model_validate(study), tmp_path / "s", smoke=True, dataset=synthetic,
                              progress=False, log=lambda _: None)
    assert student["export_path"].endswith("model.torchscript.pt") and Path(student["export_path"]).is_file()
    assert student["params"] == base["params"] and student["test_acc"] is not None  # measured on its artifact


@pytest.mark.parametrize("name", ["quickstart", "brief", "fixed", "frontier", "frontier-strong", "frontier-long",
                                  "frontier-airnet", "frontier-strongkd", "resnet20-strong"])
def test_shipped_study_files_are_valid(name):
    study = load_study(ROOT / "studies" / f"{name}.yaml")
    assert study.experiments


def test_brief_study_names_every_figure_of_the_brief():
    study = load_study(ROOT / "studies" / "brief.yaml")
    reported = [e for e in study.experiments if e.reported]
    assert len(reported) >= 11
    assert any(e.reported.params == 198309 for e in reported)


def test_plot_labels_overlap_neither_each_other_nor_markers_nor_the_frame():
    """Crowded like the frontier plot: study points at one x, literature markers among them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from slimbench.study.compare import _label_points, _marker_boxes, literature

    points = [(189042.0, a) for a in (0.9111, 0.9087, 0.9044, 0.8987)] + [(272474.0, 0.9165), (272474.0, 0.9158)]
    names = ["prune30-r8", "prune30-r8-int8", "prune30-r8-w4a4-e6", "prune30-r8-w4a4", "resnet20", "resnet20-int8"]
    refs = literature()
    ref_points = [(float(r["params"]), float(r["test_acc"])) for r in refs]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter([p[0] for p in points + ref_points], [100 * p[1] for p in points + ref_points])
    ax.set_xscale("log")
    ax.autoscale_view()
    taken = _marker_boxes(ax, points + ref_points)
    _label_points(ax, points, names, taken=taken)
    _label_points(ax, ref_points, [r["name"] for r in refs], fontsize=6, taken=taken)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text alone, not its leader line
    frame = ax.get_window_extent(renderer)
    markers = _marker_boxes(ax, points + ref_points, radius_pt=2.5)
    plt.close(fig)
    assert len(boxes) == len(names) + len({p for p in ref_points})
    slack = 1.5  # pixels: the placement estimates text widths
    for i, a in enumerate(boxes):
        assert frame.y0 - slack <= a.y0 and a.y1 <= frame.y1 + slack
        for b in boxes[i + 1:]:
            assert min(a.x1, b.x1) - max(a.x0, b.x0) <= slack or min(a.y1, b.y1) - max(a.y0, b.y0) <= slack
        for m in markers:
            assert min(a.x1, m[2]) - max(a.x0, m[0]) <= slack or min(a.y1, m[3]) - max(a.y0, m[1]) <= slack


def test_crowded_plots_number_their_points_and_name_the_front_in_a_key():
    from slimbench.study.compare import point_labels

    points = [(0.005 + i / 1000, 0.88 + i / 100) for i in range(5)]
    names = [f"model-{i}" for i in range(5)]
    assert point_labels(points, names, front=[4], max_named=5) == (names, [])
    labels, key = point_labels(list(reversed(points)), list(reversed(names)), front=[0], max_named=4)
    # numbered from the left of the plot; the front (the rightmost point here) keeps its name
    assert labels == ["5 model-4", "4", "3", "2", "1"]
    assert [line.split()[0] for line in key] == ["1", "2", "3", "4", "5*"] and key[0].endswith("model-0")


def test_crowd_window_finds_the_models_piled_at_the_accuracy_line():
    from slimbench.study.compare import crowd_window

    parents = [(0.05, 0.92), (0.09, 0.925), (0.1, 0.93)]
    crowd = [(0.004 + i * 1e-4, 0.895 + i * 1e-3) for i in range(10)]
    far_below = [(0.0045, 0.85)]
    x0, x1, y0, y1 = crowd_window(parents + crowd + far_below)
    assert (x0, y0) == crowd[0] and (x1, y1) == crowd[-1]  # the parents and the 85% model lie outside
    assert crowd_window(parents + crowd[:5]) is None  # too few to crowd: the one panel is enough
    assert crowd_window(parents) is None


def test_a_crowd_at_the_line_gets_an_enlarged_panel_that_labels_it(tmp_path, monkeypatch):
    import slimbench.plotting as plotting
    from slimbench.study.compare import plot_comparison

    figures = {}
    real_save = plotting.save_figure

    def keep(fig, path, svg=False):
        figures[Path(path).stem] = [(ax.get_xlim(), sorted(t.get_text() for t in ax.texts)) for ax in fig.axes
                                    if ax.axison]  # the panels, not the key's frameless axes
        real_save(fig, path, svg)

    monkeypatch.setattr(plotting, "save_figure", keep)
    rows = [{"experiment": f"parent-{i}", "params": 270_000 - i, "macs": 4.0e7, "score": 0.09 + i / 100,
             "test_acc": 0.92 + i / 1000, "eligible": True} for i in range(3)]
    rows += [{"experiment": f"qat-{i}", "params": 60_000 + 1000 * i, "macs": 2.2e7, "score": 0.0038 + i / 10_000,
              "test_acc": 0.893 + i / 1000, "eligible": 0.893 + i / 1000 >= 0.9} for i in range(14)]
    plot_comparison(rows, tmp_path, references=False)
    (main_limits, main_texts), (zoom_limits, zoom_texts) = figures["accuracy_vs_score"]
    # the crowd is numbered 1-14 from the left, and each number is written once, in the enlarged panel
    assert zoom_texts == sorted(str(n) for n in range(1, 15))
    assert not set(zoom_texts) & set(main_texts)
    assert zoom_limits[1] < 0.006 < main_limits[1]
    assert len(figures["accuracy_vs_params"]) == 2
    assert [len(axes) for axes in figures.values()] == [2, 2, 2]


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (0.5, 0.4)]
    assert pareto_front(points) == [4, 0, 1, 3]


def test_plotted_front_leaves_out_models_below_the_line():
    points = [(1.0, 0.89), (2.0, 0.905), (3.0, 0.90), (4.0, 0.92)]
    front, label = plotted_front(points, [False, True, True, True])
    assert front == [1, 3]  # the cheap 89% model is no candidate, and 90.0% at cost 3 is beaten by 90.5% at 2
    assert "above the line" in label
    front, label = plotted_front(points[:1], [False])
    assert front == [0] and "no model reaches" in label


def test_ray_backend(tmp_path, synthetic):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    on_disk_when_student_ended = []

    def log(line):
        if line.startswith("student"):  # results.json already holds base: it is written after each experiment
            on_disk_when_student_ended.extend(r["experiment"] for r in load_rows([tmp_path / "ray"]))

    try:
        rows = run_study(Study.model_validate(TWO), tmp_path / "ray", backend="ray", smoke=True, progress=False,
                         log=log)
    finally:
        ray.shutdown()
    assert [r["experiment"] for r in rows] == ["base", "student"]
    assert on_disk_when_student_ended == ["base"]
    assert [r["experiment"] for r in load_rows([tmp_path / "ray"])] == ["base", "student"]


@pytest.mark.slow  # 2 minutes on the AVX2 class, a tenth of the default suite there; the study file itself is
@pytest.mark.realdata  # validated whole by the default suite's load tests
def test_brief_study_smoke_on_real_cifar10(tmp_path, real_data_dir, monkeypatch):
    """Every experiment of the brief, each stage for one epoch on a slice of the real data (2-3 minutes)."""
    monkeypatch.setenv("SLIMBENCH_DATA", str(real_data_dir))
    rows = run_study(load_study(ROOT / "studies" / "brief.yaml"), tmp_path / "brief", smoke=True, progress=False,
                     log=lambda _: None)
    by_name = {r["experiment"]: r for r in rows}
    assert len(rows) == 11
    # params are the non-zero ones: the brief's counts, less the odd weight that is exactly zero after an epoch
    for name, total in (("densenet121-brief", 7978856), ("resnet34-brief", 21289802), ("resnet20", 272474)):
        assert total - 50 <= by_name[name]["params"] <= total
    assert by_name["resnet20-fp16"]["qw"] == 16
    assert by_name["resnet34-magnitude-20-bs64"]["params"] < 0.85 * 21289802  # non-zero weights after pruning


def test_a_study_directory_moved_elsewhere_resumes_and_reuses_its_stages(tmp_path, synthetic,
                                                                           interrupt_next_training):
    """Stages run on a GPU machine, copied back half-way: done stages are found where they are now, and an
    interrupted fine-tune continues from its own files, distilling from its parent where that is now."""
    import shutil

    train_stage = {"train": {"model": {"model": "resnet20", "width": 0.25}, "epochs": 1, "batch_size": 64,
                             "data": {"val_size": 64}}}
    prune_stage = {"prune": {"kind": "structured", "ratio": 0.3, "distill_from_parent": True,
                             "finetune": {"epochs": 2, "batch_size": 64, "data": {"val_size": 64}}}}
    first = Study.model_validate({"name": "m", "data": {"name": "synthetic"},
                                  "experiments": [{"name": "e", "stages": [train_stage]}]})
    both = Study.model_validate({"name": "m", "data": {"name": "synthetic"},
                                 "experiments": [{"name": "e", "stages": [train_stage, prune_stage]}]})
    quiet = {"dataset": synthetic, "progress": False, "log": lambda _: None}
    from slimbench.train import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        run_study(first, tmp_path / "there", **quiet)  # the armed fixture stops the train stage...
    run_study(first, tmp_path / "there", **quiet)  # ...which then runs to its end
    interrupt_next_training()  # armed again: the prune stage's fine-tune stops after one of its two epochs
    with pytest.raises(TrainingInterrupted):
        run_study(both, tmp_path / "there", **quiet)
    shutil.move(tmp_path / "there", tmp_path / "here")
    [row] = run_study(both, tmp_path / "here", **quiet)
    assert row["model_path"].startswith(str(tmp_path / "here")) and row["ps"] > 0.2
    outputs = [json.loads(p.read_text())["output"] for p in sorted((tmp_path / "here" / "stages").glob("*/done.json"))]
    assert outputs == ["model.pt", "model.pt"]  # relative to each stage: the directory can move again
    assert study_runner.stage_output({"output": "/gpu/box/stages/train-abc/step1/model.pt"},
                                     tmp_path / "train-abc") == tmp_path / "train-abc" / "step1" / "model.pt"


def test_study_processes_side_by_side_keep_each_others_rows(tmp_path, synthetic, trained, monkeypatch):
    """Two `study run --only` processes on one directory: the one that writes last must not drop the other's row."""
    study = Study.model_validate({"name": "p", "data": {"name": "synthetic"},
                                  "experiments": [{"name": "a", "checkpoint": str(trained)},
                                                  {"name": "b", "checkpoint": str(trained)}]})
    quiet = {"dataset": synthetic, "progress": False, "log": lambda _: None}
    real = study_runner.run_experiment

    def b_finishes_meanwhile(study_, experiment, *args, **kwargs):
        if experiment.name == "a":  # while this process works on a, another one runs b into the same directory
            run_study(study, tmp_path / "s", only=["b"], **quiet)
        return real(study_, experiment, *args, **kwargs)

    monkeypatch.setattr(study_runner, "run_experiment", b_finishes_meanwhile)
    run_study(study, tmp_path / "s", only=["a"], **quiet)
    assert [r["experiment"] for r in load_rows([tmp_path / "s"])] == ["a", "b"]


def test_time_left_uses_the_median_epoch(tmp_path):
    """An epoch slowed by a paused or shared machine must not inflate the estimate."""
    stage = tmp_path / "train-abc"
    stage.mkdir()
    (stage / "log.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_s": s, "eval_s": 1.0}) + "\n"
                                             for i, s in enumerate([9.0, 1000.0, 11.0])))
    done, epoch_s, _ = study_runner._epochs_logged(stage)
    assert (done, epoch_s) == (3, 12.0)
    state = study_runner.StageState("e", 1, "train", "abc", stage, "interrupted", done, 5, epoch_s=epoch_s)
    assert state.seconds_left == 24.0
    state.state = "done"
    assert state.seconds_left is None


def test_time_left_follows_the_latest_epochs(tmp_path):
    """Ten epochs slowed by a shared machine, then five at full speed: the estimate is the speed of now."""
    stage = tmp_path / "train-abc"
    stage.mkdir()
    (stage / "log.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "epoch_s": s, "eval_s": 1.0}) + "\n"
                                             for i, s in enumerate([800.0] * 10 + [140.0, 150.0, 130.0, 145.0, 135.0])))
    done, epoch_s, _ = study_runner._epochs_logged(stage)
    assert (done, epoch_s) == (15, 141.0)


def test_status_shows_the_best_epoch_so_far_of_an_unfinished_stage(tmp_path):
    """Hours into a run, status tells the validation accuracy it would select now (and that epoch's test)."""
    study = Study.model_validate(TWO)
    [(_, _, _, stage_dir), _] = study_runner._plans(study, tmp_path, False)["base"][1]
    stage_dir.mkdir(parents=True)
    records = [{"epoch": 1, "epoch_s": 5, "val_acc": 0.4, "test_acc": 0.41},
               {"epoch": 2, "epoch_s": 5, "val_acc": 0.6, "test_acc": 0.58},
               {"epoch": 3, "epoch_s": 5, "val_acc": 0.5, "test_acc": 0.62}]
    (stage_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    base_train = study_status(study, tmp_path, only=["base"])[0]
    assert (base_train.kind, base_train.state, base_train.epochs_done) == ("train", "interrupted", 3)
    assert (base_train.val_acc, base_train.test_acc) == (0.6, 0.58)  # epoch 2, not the best test
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(TWO))
    result = CliRunner().invoke(app, ["study", "status", str(tmp_path / "two.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 0 and "60.0" in result.output and "best epoch so far" in result.output, result.output


def test_training_time_is_blank_for_experiments_that_did_not_train():
    assert study_runner._training_seconds([{"metrics": {"train_seconds": 5.0}}, {"metrics": {"parity": 1.0}}]) == 5.0
    assert study_runner._training_seconds([{"kind": "quantize", "metrics": {"parity": 1.0}}, {"kind": "export"}]) is None


def test_a_train_stage_runs_a_committed_config_and_chains_from_the_stage_before(tmp_path, synthetic):
    """The strong recipe's runs, made by hand one after another, as one experiment of a study."""
    (tmp_path / "configs").mkdir()
    first = {"name": "cycle1", "model": {"model": "resnet20", "width": 0.25}, "epochs": 2, "batch_size": 64,
             "data": {"val_size": 64}, "optimizer": {"lr": 0.05}, "seed": 3}
    (tmp_path / "configs" / "one.yaml").write_text(yaml.safe_dump(first))
    second = {**first, "name": "cycle2", "epochs": 1, "init_from": "elsewhere/model.pt", "optimizer": {"lr": 0.01}}
    (tmp_path / "configs" / "two.yaml").write_text(yaml.safe_dump(second))
    study = {"name": "chain", "data": {"name": "synthetic"}, "experiments": [{"name": "chain", "stages": [
        {"train": {"config": "configs/one.yaml", "optimizer": {"momentum": 0.5}}},
        {"train": {"config": "configs/two.yaml", "init_from": None}}]}]}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(study))
    loaded = load_study(path)
    one, two = (next(iter(stage.values())) for stage in loaded.experiments[0].stages)
    assert one == {**first, "optimizer": {"lr": 0.05, "momentum": 0.5}}  # the file's keys, the stage's laid over
    assert two == {**second, "init_from": None}
    run_study(loaded, tmp_path / "out", dataset=synthetic, progress=False, log=lambda _: None)
    runs = {yaml.safe_load((d / "config.yaml").read_text())["name"]: d for d in (tmp_path / "out" / "stages").glob("train-*")}
    assert yaml.safe_load((runs["cycle2"] / "config.yaml").read_text())["init_from"] == str(runs["cycle1"] / "model.pt")
    assert len((runs["cycle1"] / "log.jsonl").read_text().splitlines()) == 2

    # the file's init_from kept in a stage that starts from a model is refused, not silently preferred
    study["experiments"][0]["stages"][1]["train"].pop("init_from")
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match=r"stage 2 \(train\): init_from names a file.*init_from: null"):
        load_study(path)
    study["experiments"][0]["stages"][1]["train"]["config"] = "configs/three.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match=r"experiment 'chain', stage 2 \(train\): config configs/three.yaml does not"):
        load_study(path)


def test_a_train_stage_takes_its_parents_recipe_only_when_asked(tmp_path, synthetic):
    """A train stage after a model uses the trainer's defaults beyond the keys it names, unless it says
    ``recipe: parent``: then it is laid over the parent's training config, as prune and quantize fine-tunes are."""
    parent = {"model": {"model": "resnet20", "width": 0.25}, "epochs": 1, "batch_size": 64, "seed": 5,
              "data": {"val_size": 96}, "label_smoothing": 0.1, "optimizer": {"lr": 0.05, "weight_decay": 0.001}}
    more = {"epochs": 1, "optimizer": {"lr": 0.01}}
    study = {"name": "recipes", "data": {"name": "synthetic"}, "experiments": [
        {"name": "parent", "stages": [{"train": parent}]},
        {"name": "defaults", "from": "parent", "stages": [{"train": {**more, "batch_size": 64}}]},
        {"name": "inherited", "from": "parent", "stages": [{"train": {**more, "recipe": "parent"}}]},
    ]}
    run_study(Study.model_validate(study), tmp_path / "out", dataset=synthetic, progress=False, log=lambda _: None)
    configs = {}
    for run in (tmp_path / "out" / "stages").glob("train-*"):
        config = yaml.safe_load((run / "config.yaml").read_text())
        configs[(config["init_from"] is not None, config["label_smoothing"])] = config
    assert set(configs) == {(False, 0.1), (True, 0.0), (True, 0.1)}
    inherited = configs[(True, 0.1)]
    assert inherited["optimizer"]["lr"] == 0.01 and inherited["optimizer"]["weight_decay"] == 0.001
    assert inherited["seed"] == 5 and inherited["data"]["val_size"] == 96 and "recipe" not in inherited
    assert configs[(True, 0.0)]["optimizer"]["weight_decay"] != 0.001

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**study, "experiments": [{"name": "x", "stages": [{"train": {"recipe": "parent"}}]}]}))
    with pytest.raises(ConfigError, match=r"stage 1 \(train\): recipe: parent takes the recipe of the model before"):
        load_study(path)
    study["experiments"][2]["stages"][0]["train"]["recipe"] = "parents"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match="'inherited', stage 1 \\(train\\): recipe must be one of defaults, parent, "):
        load_study(path)


def test_an_experiment_starts_from_a_checkpoint_file(tmp_path, trained, synthetic):
    """A model trained before enters a study as a row of its own and as the input of compression stages."""
    import shutil

    from slimbench.artifact import load_artifact

    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(trained, folder / "model.pt")
    study = {"name": "mine", "data": {"name": "synthetic"}, "experiments": [
        {"name": "given", "checkpoint": "model.pt"},  # relative to the study file
        {"name": "given-pruned", "checkpoint": "model.pt", "stages": [{"prune": {"kind": "structured", "ratio": 0.3}}]},
        # ratios count against the original architecture: 0.5 after 0.3 removes another fifth of it
        {"name": "pruned-again", "from": "given-pruned", "stages": [{"prune": {"kind": "structured", "ratio": 0.5}}]},
    ]}
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    loaded = load_study(folder / "study.yaml")
    rows = run_study(loaded, tmp_path / "out", dataset=synthetic, progress=False, log=lambda _: None)
    given, pruned, again = rows
    parent = load_artifact(trained)
    assert given["stages"] == [] and given["test_acc"] == parent.metrics["test_acc"]
    assert given["val_acc"] == parent.metrics["val_acc"] and given["train_s"] is None  # the study did not train it
    assert given["params"] == parent.metrics["params"] > pruned["params"] > again["params"]
    status = study_status(loaded, tmp_path / "out")
    assert [(s.kind, s.state) for s in status] == [("checkpoint", "given"), ("checkpoint", "given"), ("prune", "done"),
                                                    ("prune", "done")]
    assert status[0].directory == folder / "model.pt"

    # the file's contents key the stages: the same model elsewhere is the same study, a changed one is not
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)

    def stage_states(study_file):
        return [s.state for s in study_status(load_study(study_file), tmp_path / "out") if s.kind != "checkpoint"]

    assert stage_states(moved / "study.yaml") == ["done", "done"]
    shutil.copy(again["model_path"], moved / "model.pt")
    assert stage_states(moved / "study.yaml") == ["pending", "pending"]

    with pytest.raises(ValueError, match="not both"):
        Study.model_validate({**study, "experiments": [{"name": "x", "from": "y", "checkpoint": "m.pt"}]})
    with pytest.raises(ValueError, match="needs stages"):
        Study.model_validate({**study, "experiments": [{"name": "x"}]})
    (folder / "model.pt").unlink()
    with pytest.raises(ConfigError, match=r"checkpoint .*model.pt does not exist"):
        run_study(loaded, tmp_path / "out", dataset=synthetic, progress=False, log=lambda _: None)


def test_a_row_whose_checkpoint_is_not_there_yet_leaves_the_others_usable(tmp_path, trained, synthetic):
    """A study file may name the checkpoint a later row starts from before that file is kept (the row that makes
    it runs first): the other rows run, keep and show; only the row that needs the file says it is missing."""
    import shutil

    from slimbench.study import keep_experiment

    shutil.copy(trained, tmp_path / "model.pt")
    study = {"name": "ahead", "data": {"name": "synthetic"}, "experiments": [
        {"name": "pruned", "checkpoint": "model.pt", "stages": [{"prune": {"kind": "structured", "ratio": 0.3}}]},
        {"name": "pruned-kept", "checkpoint": "kept/model.pt"},
        {"name": "after", "from": "pruned-kept", "stages": [{"prune": {"kind": "structured", "ratio": 0.5}}]},
    ]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    loaded = load_study(tmp_path / "study.yaml")
    run_study(loaded, tmp_path / "out", only=["pruned"], dataset=synthetic, progress=False, log=lambda _: None)
    states = [(s.experiment, s.kind, s.state) for s in study_status(loaded, tmp_path / "out")]
    assert states == [("pruned", "checkpoint", "given"), ("pruned", "prune", "done"),
                      ("pruned-kept", "checkpoint", "missing"), ("after", "prune", "pending")]
    with pytest.raises(ConfigError, match=r"experiment 'pruned-kept': checkpoint .*kept/model.pt does not exist"):
        run_study(loaded, tmp_path / "out", only=["after"], dataset=synthetic, progress=False, log=lambda _: None)
    merged = merge_studies(loaded, [tmp_path / "out"], tmp_path / "merged")
    assert merged.copied and merged.rows == ["pruned"]
    keep_experiment(loaded, tmp_path / "out", "pruned", tmp_path / "kept")
    assert [s.state for s in study_status(load_study(tmp_path / "study.yaml"), tmp_path / "out", only=["after"])] == [
        "given", "pending"]


def test_report_curves_include_the_fine_tunes_of_prune_and_qat_stages(tmp_path):
    from slimbench.study.report import _training_runs

    for log in ("train/log.jsonl", "prune/step1/finetune/log.jsonl", "prune/step2/finetune/log.jsonl",
                "qat/qat/finetune/log.jsonl"):
        (tmp_path / log).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / log).write_text('{"epoch": 1, "val_acc": 0.5}\n')
    rows = [{"experiment": "a", "stages": ["train", "prune"], "stage_dirs": [str(tmp_path / "train"),
                                                                           str(tmp_path / "prune")]},
            {"experiment": "b", "stages": ["quantize", "export"], "stage_dirs": [str(tmp_path / "qat"),
                                                                               str(tmp_path / "export")]}]
    assert _training_runs(rows) == [
        ("a", tmp_path / "train"),
        ("a (prune fine-tune step1)", tmp_path / "prune/step1/finetune"),
        ("a (prune fine-tune step2)", tmp_path / "prune/step2/finetune"),
        ("b (quantize fine-tune)", tmp_path / "qat/qat/finetune"),
    ]


def test_study_merge_brings_rows_keeps_shared_stages_and_refuses_conflicts(tmp_path, synthetic):
    """Two copies of a study (two machines): disjoint rows merge, a stage both finished with the same model is
    kept, one finished with a different model is a conflict that is never overwritten."""
    from slimbench.study import merge_studies

    tiny = {"model": {"model": "resnet20", "width": 0.25}, "epochs": 1, "batch_size": 64, "data": {"val_size": 64},
            "report_test_each_epoch": False}
    spec = {"name": "m", "data": {"name": "synthetic"}, "experiments": [
        {"name": "a", "stages": [{"train": tiny}]},
        {"name": "b", "stages": [{"train": {**tiny, "optimizer": {"lr": 0.05}}}]},
        {"name": "c", "from": "a", "stages": [{"prune": {"kind": "structured", "ratio": 0.3}}]},
    ]}
    study = Study.model_validate(spec)
    quiet = {"dataset": synthetic, "progress": False, "log": lambda _: None}
    run_study(study, tmp_path / "here", only=["a"], **quiet)
    run_study(study, tmp_path / "there", only=["c", "b"], **quiet)  # c needs a: both machines trained it
    (tmp_path / "other").mkdir()
    spec_other = json.loads(json.dumps(spec))
    spec_other["experiments"][0]["stages"][0]["train"]["epochs"] = 2  # another version of the file
    run_study(Study.model_validate(spec_other), tmp_path / "other", only=["a"], **quiet)

    report = merge_studies(study, [tmp_path / "there", tmp_path / "other"], tmp_path / "here")
    assert report.ok and len(report.identical) == 1 and len(report.copied) == 2  # a shared; b and c brought in
    assert len(report.refused) == 1 and "not a stage of" in report.refused[0]
    assert [r["experiment"] for r in load_rows([tmp_path / "here"])] == ["a", "b", "c"]
    assert {s.state for s in study_status(study, tmp_path / "here")} == {"done"}
    c_row = next(r for r in load_rows([tmp_path / "here"]) if r["experiment"] == "c")
    assert Path(c_row["model_path"]).is_relative_to(tmp_path / "here") and Path(c_row["model_path"]).is_file()
    assert run_study(study, tmp_path / "here", **quiet)  # nothing left to run: every stage is done here
    # a conflict: the same stage finished elsewhere with another model (a nondeterministic machine, say)
    from slimbench.artifact import load_artifact, save_artifact

    stage = next((tmp_path / "there" / "stages").glob("train-*/done.json")).parent
    done = json.loads((stage / "done.json").read_text())
    model_path = stage / done["output"]
    artifact = load_artifact(model_path)
    artifact.state = {k: v + 1 if v.is_floating_point() else v for k, v in artifact.state.items()}
    save_artifact(artifact, model_path)
    before = (tmp_path / "here" / "stages" / stage.name / done["output"]).read_bytes()
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["study", "merge", str(tmp_path / "m.yaml"), str(tmp_path / "there"),
                                      "--into", str(tmp_path / "here")])
    assert result.exit_code == 1 and "CONFLICT" in result.output
    assert (tmp_path / "here" / "stages" / stage.name / done["output"]).read_bytes() == before


def test_smoke_calibration_never_sees_validation_images(synthetic):
    """A smoke run trains on a 512-image slice holding out 64: later stages calibrate on that run's own training
    split (before, they rebuilt a split of a tenth, 51 images, and drew some of the 64 validation images)."""
    from slimbench.artifact import Artifact
    from slimbench.compress.calibration import calibration_indices
    from slimbench.data import split_dataset

    data = study_runner.smoke_dataset(synthetic)
    config = study_runner.smoke_config("train", {"epochs": 3})
    lineage = [{"stage": "train", "config": {"data": {"name": "synthetic", **config["data"]}}}]
    artifact = Artifact(spec={"model": "resnet20"}, state={}, lineage=lineage)
    validation = set(split_dataset(data, config["data"]["val_size"], 0).val_idx.tolist())
    picked = set(calibration_indices(data, artifact, 10_000, seed=0).tolist())
    assert len(picked) == len(data.train_y) - len(validation) and not picked & validation


def test_distinct_labels_grow_only_where_paths_collide():
    from slimbench.study.compare import distinct_labels

    paths = [Path("/r/frontier-long/w4a4/model.pt"), Path("/r/frontier-airnet/w4a4/model.pt"),
             Path("/r/best/model.onnx"), Path("/r/frontier-long/w4a4/model.pt")]
    assert distinct_labels(paths) == ["frontier-long/w4a4/model.pt", "frontier-airnet/w4a4/model.pt",
                                      "best/model.onnx", "frontier-long/w4a4/model.pt"]
    assert distinct_labels([Path("/model.pt")]) == ["model.pt"]


def test_keep_copies_a_finished_experiments_result_and_nothing_to_resume_from(tmp_path, synthetic):
    from slimbench.artifact import load_artifact
    from slimbench.study import keep_experiment

    _run(tmp_path, synthetic)
    study_file = tmp_path / "two.yaml"
    study_file.write_text(yaml.safe_dump(TWO))
    runner = CliRunner()
    kept = runner.invoke(app, ["study", "keep", str(study_file), "base", str(tmp_path / "kept"),
                               "--out", str(tmp_path / "study")])
    assert kept.exit_code == 0, kept.output
    files = {p.name for p in (tmp_path / "kept").iterdir()}
    # the pruned model, with the prune config and metrics (no fine-tune in this stage: no run files)
    assert files == {"model.pt", "prune.yaml", "metrics.json"}
    assert load_artifact(tmp_path / "kept" / "model.pt").lineage[-1]["stage"] in ("prune", "train")
    export = runner.invoke(app, ["study", "keep", str(study_file), "student", str(tmp_path / "onnx"),
                                 "--out", str(tmp_path / "study")])
    assert export.exit_code == 0, export.output
    assert {"model.onnx", "model.json", "MODEL_CARD.md", "predict.py"} <= {p.name for p in (tmp_path / "onnx").iterdir()}
    # an export kept with the model it exports, in one folder; a row whose files clash with it is refused
    both = runner.invoke(app, ["study", "keep", str(study_file), "student", str(tmp_path / "both"), "--also", "base",
                               "--out", str(tmp_path / "study")])
    assert both.exit_code == 0, both.output
    assert {"model.onnx", "model.json", "MODEL_CARD.md", "model.pt", "prune.yaml"} <= {
        p.name for p in (tmp_path / "both").iterdir()}
    assert load_artifact(tmp_path / "both" / "model.pt").digest == load_artifact(tmp_path / "kept" / "model.pt").digest
    twice = runner.invoke(app, ["study", "keep", str(study_file), "student", str(tmp_path / "twice"), "--also", "base",
                                "--also", "student", "--out", str(tmp_path / "study")])
    assert twice.exit_code == 0, twice.output  # the same file named twice is one file
    # the same directory read by a study whose base ends at its train stage (same stage key): the run's files
    train_only = {**TWO, "experiments": [{**TWO["experiments"][0], "stages": TWO["experiments"][0]["stages"][:1]}]}
    written = keep_experiment(Study.model_validate(train_only), tmp_path / "study", "base", tmp_path / "trained")
    names = {p.name for p in written}
    assert {"model.pt", "metrics.json", "config.yaml", "log.jsonl", "curves.png"} <= names
    assert not names & {"last.pt", "best.pt", "done.json"}
    exported_twice = Study.model_validate({**TWO, "experiments": [*TWO["experiments"], {
        "name": "base-onnx", "from": "base", "stages": [{"export": {"parity_images": 64, "latency": False}}]}]})
    run_study(exported_twice, tmp_path / "study", only=["base-onnx"], dataset=synthetic, progress=False,
              log=lambda _: None)
    with pytest.raises(ConfigError, match="is in both student and base-onnx: keep them in two folders"):
        keep_experiment(exported_twice, tmp_path / "study", "student", tmp_path / "clash", also=["base-onnx"])
    assert not (tmp_path / "clash").exists()

    again = runner.invoke(app, ["study", "keep", str(study_file), "base", str(tmp_path / "kept"),
                                "--out", str(tmp_path / "study")])
    assert again.exit_code != 0 and "exists" in str(again.exception) and "--replace" in str(again.exception)
    (tmp_path / "kept" / "note.txt").write_text("mine")
    replaced = runner.invoke(app, ["study", "keep", str(study_file), "base", str(tmp_path / "kept"), "--replace",
                                   "--out", str(tmp_path / "study")])
    assert replaced.exit_code == 0 and not (tmp_path / "kept" / "note.txt").exists()
    unknown = runner.invoke(app, ["study", "keep", str(study_file), "nobody", str(tmp_path / "x"),
                                  "--out", str(tmp_path / "study")])
    assert unknown.exit_code != 0 and "no experiment named nobody" in str(unknown.exception)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.keeping-*"))


def test_keep_refuses_an_unfinished_experiment(tmp_path, synthetic, interrupt_next_training):
    from slimbench.study import keep_experiment
    from slimbench.train import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        _run(tmp_path, synthetic, only=["base"])
    with pytest.raises(ConfigError, match="base is not finished: its prune stage is pending"):
        keep_experiment(Study.model_validate(TWO), tmp_path / "study", "base", tmp_path / "kept")
    assert not (tmp_path / "kept").exists()


def test_fresh_weights_without_a_model_is_refused_when_the_study_loads(tmp_path):
    """A first stage with fresh_weights has no structure to keep: the study fails on load, not when that stage
    comes up after the others have trained; from a model before it, it loads."""
    train = {"epochs": 1, "fresh_weights": True}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "fresh", "data": {"name": "synthetic"},
                                    "experiments": [{"name": "x", "stages": [{"train": train}]}]}))
    with pytest.raises(ConfigError, match=r"'x', stage 1 \(train\): fresh_weights keeps the structure"):
        load_study(path)
    path.write_text(yaml.safe_dump({"name": "fresh", "data": {"name": "synthetic"}, "experiments": [
        {"name": "parent", "stages": [{"train": {"epochs": 1}}]},
        {"name": "x", "from": "parent", "stages": [{"train": train}]},
        {"name": "y", "stages": [{"train": {"epochs": 1}}, {"train": train}]}]}))
    assert [e.name for e in load_study(path).experiments] == ["parent", "x", "y"]
