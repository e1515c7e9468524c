"""Merge copies of a study directory: a GPU machine's, a colleague's, an older run's, into one.

Stages are keyed as the runner keys them (``stages/<kind>-<key>``), so a stage of another copy is the same
stage here exactly when the study file plans that directory name. The rules:

- a finished stage that is missing here is copied in (atomically: staged beside, then renamed);
- a finished stage replaces an unfinished one here, which is kept aside as ``<name>.unfinished-<time>``;
- a stage finished in both is kept as it is when both made the same model (same SHA-256), and is a conflict
  otherwise: never overwritten, reported, and the command fails;
- an unfinished stage is copied only where this directory has nothing (``study run`` resumes it here);
- a stage directory the study file does not plan (another version of the file, other settings) is refused.

Rows are then rebuilt from the merged stages by the runner's own code (nothing trains: only experiments
whose stages are all finished get a row), and written into ``results.json`` beside the rows already there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimbench.artifact import atomic_write
from slimbench.errors import ConfigError
from slimbench.study.runner import (
    _plans,
    _start,
    run_experiment,
    stage_output,
    write_rows,
)
from slimbench.study.spec import Study, references


@dataclass
class MergeReport:
    copied: list[str] = field(default_factory=list)  # finished stages brought in
    replaced: list[str] = field(default_factory=list)  # unfinished stages here, replaced by a finished one
    identical: list[str] = field(default_factory=list)  # finished in both, same model
    conflicts: list[str] = field(default_factory=list)  # finished in both, different models: left as they were
    unfinished: list[str] = field(default_factory=list)  # unfinished stages copied where nothing was
    refused: list[str] = field(default_factory=list)  # directories the study file does not plan
    rows: list[str] = field(default_factory=list)  # experiments with a row in results.json after the merge

    @property
    def ok(self) -> bool:
        return not self.conflicts


def _digest(path: Path) -> str:
    """What the model is: a .pt artifact's weights, structure and quantization (not its timestamps or metrics,
    which differ between two runs that made the same model); any other file's bytes."""
    if path.suffix == ".pt":
        from slimbench.artifact import load_artifact

        return load_artifact(path).digest
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage_model(stage_dir: Path) -> Path | None:
    record = json.loads((stage_dir / "done.json").read_text())
    output = stage_output(record, stage_dir)
    return output if output.is_file() else None


def _copy_in(source: Path, target: Path) -> None:
    staging = target.with_name(f".{target.name}.merging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(".lock"))
    staging.rename(target)


def merge_studies(study: Study, sources: list[str | Path], into: str | Path, smoke: bool = False) -> MergeReport:
    """Bring the stages and rows of each of ``sources`` (copies of a study directory) into ``into``."""
    into = Path(into)
    planned = {stage_dir.name: experiment for experiment, (_, stages) in _plans(study, into, smoke).items()
               for (_, _, _, stage_dir) in stages}
    report = MergeReport()
    (into / "stages").mkdir(parents=True, exist_ok=True)
    if not (into / "study.json").exists():
        atomic_write(into / "study.json", json.dumps(study.model_dump(mode="json", by_alias=True), indent=2).encode())
    for source in map(Path, sources):
        if not (source / "stages").is_dir():
            raise ConfigError(f"{source} is not a study directory (no stages/ inside)")
        if source.resolve() == into.resolve():
            raise ConfigError(f"{source} is the directory merged into")
        for stage in sorted(p for p in (source / "stages").iterdir() if p.is_dir() and not p.name.startswith(".")):
            label = f"{planned.get(stage.name, '?')}: {stage.name} (from {source})"
            if stage.name not in planned:
                report.refused.append(f"{stage.name} (from {source}): not a stage of {study.name}'s file as it is now")
                continue
            target = into / "stages" / stage.name
            finished_there, finished_here = (stage / "done.json").exists(), (target / "done.json").exists()
            if not finished_there:
                if not target.exists():
                    _copy_in(stage, target)
                    report.unfinished.append(label)
                continue
            if not target.exists():
                _copy_in(stage, target)
                report.copied.append(label)
            elif not finished_here:
                target.rename(target.with_name(f"{target.name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}"))
                _copy_in(stage, target)
                report.replaced.append(label)
            else:
                theirs, ours = _stage_model(stage), _stage_model(target)
                if theirs is not None and ours is not None and _digest(theirs) == _digest(ours):
                    report.identical.append(label)
                else:
                    report.conflicts.append(f"{label}: finished in both with different models; kept {target}")
    report.rows = _rebuild_rows(study, into, smoke)
    return report


def _rebuild_rows(study: Study, into: Path, smoke: bool) -> list[str]:
    """Rows of every experiment whose stages (and those of what it starts from) are all finished here."""
    plans = _plans(study, into, smoke)
    finals: dict[str, tuple[str, Path]] = {}
    rows: list[dict[str, Any]] = []
    for experiment in study.experiments:
        needs = references(experiment)
        stages = plans[experiment.name][1]
        if any(name not in finals for name in needs) or not all((d / "done.json").exists() for *_, d in stages):
            continue
        try:
            start = _start(experiment, finals)
        except ConfigError:  # its checkpoint is not there (yet): no row, like a row whose stages are unfinished
            continue
        if not stages and start[1] is None:
            continue
        rows.append(run_experiment(study, experiment, into, dataset=None, finals=finals,  # type: ignore[arg-type]
                                   smoke=smoke, progress=False, log=lambda _: None))
    return [row["experiment"] for row in write_rows(study, into, smoke, rows)]
