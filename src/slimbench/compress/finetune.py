"""Fine-tuning after a compression step, through the trainer's public API, resumable from disk.

The run reuses the parent's own training config (data split, augmentation, label smoothing) with the
stage's ``finetune`` overrides on top, optionally distilling from a teacher artifact.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slimbench.artifact import recipe_of
from slimbench.config import merge, validate
from slimbench.data import ImageDataset


def finetune(
    start: Path, spec: dict[str, Any], base: dict[str, Any], overrides: dict[str, Any], run_dir: Path, name: str,
    teacher: str | None = None, dataset: ImageDataset | None = None, store: Path | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Train from ``start`` into ``run_dir`` (or resume, or reuse a finished run); returns model.pt and metrics."""
    from slimbench.train import TrainingInterrupted

    try:
        return _finetune(start, spec, base, overrides, run_dir, name, teacher, dataset, store, progress)
    except TrainingInterrupted as exc:  # the pipeline that called us resumes the run, not `train --resume`
        raise exc.continue_with("run the same command again") from None


def _finetune(
    start: Path, spec: dict[str, Any], base: dict[str, Any], overrides: dict[str, Any], run_dir: Path, name: str,
    teacher: str | None, dataset: ImageDataset | None, store: Path | None, progress: bool,
) -> tuple[Path, dict[str, Any]]:
    from slimbench.train import TrainConfig, resume_training, train  # the trainer is a public API

    if (run_dir / "model.pt").exists():
        return run_dir / "model.pt", json.loads((run_dir / "metrics.json").read_text())
    if (run_dir / "last.pt").exists():  # the teacher where it is now (a moved study names it elsewhere)
        teacher = teacher or (overrides.get("distill") or {}).get("teacher")
        result = resume_training(run_dir, progress=progress, dataset=dataset, store=store, teacher=teacher)
        return run_dir / "model.pt", result.metrics
    settings = merge(recipe_of(base), overrides)
    settings.update(name=name, model=spec, init_from=str(start))
    if teacher:
        settings["distill"] = merge({"teacher": teacher}, overrides.get("distill") or {})
    config = validate(TrainConfig, settings, "finetune")
    result = train(config, run_dir=run_dir, progress=progress, dataset=dataset, store=store)
    return run_dir / "model.pt", result.metrics


def same_stage_config(previous: BaseModel, config: BaseModel) -> bool:
    """Whether a stage's saved config and this one describe the same run. A distillation teacher named by another
    path still counts as the same when the file there holds the same bytes or is gone: a study moved, or run
    from another checkout, names its teacher where it is now."""
    if previous == config:
        return True
    before, now = previous.model_dump(), config.model_dump()
    teachers = [_pop_teacher(before), _pop_teacher(now)]
    if None in teachers or before != now:
        return False
    old, new = (Path(t) for t in teachers)
    return not old.exists() or (new.exists() and filecmp.cmp(old, new, shallow=False))


def _pop_teacher(config: dict[str, Any]) -> str | None:
    distill = (config.get("finetune") or {}).get("distill") or {}
    return distill.pop("teacher", None)
