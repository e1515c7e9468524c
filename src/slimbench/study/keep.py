"""Keep one experiment's result out of a study directory: what a benchmark commits and a reader opens.

A study directory holds every stage's checkpoints and intermediate steps; a committed result needs the model the
experiment ends with and what explains it: the stage's own config and metrics, the training run's config, epoch
log and curves, and for an export its file, sidecar, model card and ``predict.py``. Resume state (``last.pt``,
``best.pt``, ``init.pt``, a pruning step's ``pruned.pt``) is left behind.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from slimbench.errors import ConfigError
from slimbench.study.runner import stage_output, study_status
from slimbench.study.spec import Study

STAGE_FILES = ("metrics.json", "prune.yaml", "quantize.yaml", "export.yaml", "MODEL_CARD.md", "predict.py")
RUN_FILES = ("config.yaml", "log.jsonl", "curves.png")
EXPORT_SUFFIXES = (".onnx", ".tflite", ".json")


def _result_files(study: Study, out_dir: Path, experiment: str) -> list[Path]:
    """The files that explain ``experiment``'s result: its last (finished) stage's output, config and metrics, and
    the run that trained it."""
    states = [s for s in study_status(study, out_dir, only=[experiment]) if s.experiment == experiment]
    stages = [s for s in states if s.kind != "checkpoint"]
    if not stages:
        raise ConfigError(f"experiment {experiment} has no stages of its own: it names a checkpoint, keep that file")
    last = stages[-1]
    if last.state != "done":
        raise ConfigError(f"experiment {experiment} is not finished: its {last.kind} stage is {last.state} "
                          f"({last.directory})")
    stage_dir = last.directory
    output = stage_output(json.loads((stage_dir / "done.json").read_text()), stage_dir)
    chosen = {output} if output.exists() else set()
    chosen |= {stage_dir / name for name in STAGE_FILES if (stage_dir / name).exists()}
    if output.suffix in EXPORT_SUFFIXES:
        chosen |= {p for p in stage_dir.iterdir() if p.is_file() and p.suffix in EXPORT_SUFFIXES and p.name != "done.json"}
    logs = sorted(stage_dir.rglob("log.jsonl"), key=lambda path: path.stat().st_mtime)
    if logs:  # the training run that made the model: a stage's own, or its last step's fine-tune
        chosen |= {logs[-1].parent / name for name in RUN_FILES if (logs[-1].parent / name).exists()}
    names = [p.name for p in chosen]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"{stage_dir}: {', '.join(clashes)} in more than one place; copy by hand")
    return sorted(chosen)


def keep_experiment(study: Study, out_dir: str | Path, experiment: str, dest: str | Path,
                    replace: bool = False, also: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Copy ``experiment``'s last stage (finished) from the study directory ``out_dir`` into ``dest``; returns the
    files written. ``also``: other experiments kept beside it, such as the row an export row exports (its model,
    training log and curves beside the exported file); two rows that both have a file of one name are refused.
    ``dest`` is written whole or not at all, and replaces an existing folder only when asked."""
    out_dir, dest = Path(out_dir), Path(dest)
    if dest.exists() and not replace:
        raise ConfigError(f"{dest} exists: choose another folder, or replace it (--replace)")
    chosen: dict[str, Path] = {}
    owner: dict[str, str] = {}
    for name in (experiment, *also):
        for path in _result_files(study, out_dir, name):
            if path.name in chosen and chosen[path.name] != path:
                raise ConfigError(f"{path.name} is in both {owner[path.name]} and {name}: keep them in two folders")
            chosen[path.name], owner[path.name] = path, name
    names = list(chosen)

    staging = dest.with_name(f".{dest.name}.keeping-{time.time_ns()}")
    staging.mkdir(parents=True)
    try:
        for path in chosen.values():
            shutil.copy2(path, staging / path.name)
        if dest.exists():
            aside = dest.with_name(f".{dest.name}.replaced-{time.time_ns()}")
            dest.rename(aside)
            staging.rename(dest)
            shutil.rmtree(aside)
        else:
            staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return sorted(dest / name for name in names)
