"""The stage kinds a study can use, each declared once: its config model, how it runs, its smoke settings and
its epoch estimate. A study file is validated against these when it is loaded, so a misspelled key in the
last stage of a long study fails before anything trains. New kinds register with :func:`register_stage`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from slimbench.compress import PruneConfig, QuantizeConfig
from slimbench.config import StrictModel, format_validation_error, merge
from slimbench.data import ImageDataset
from slimbench.errors import ConfigError
from slimbench.train import TrainConfig

SMOKE_VAL_IMAGES = 64


@dataclass(frozen=True)
class StageContext:
    """What a running stage gets: its input model (None for a first train stage), its directory, the data."""

    source: Path | None
    stage_dir: Path
    dataset: ImageDataset
    data: dict[str, Any]  # the study's data section
    progress: bool
    command: str | None  # the command that remakes this stage (model cards print it)


@dataclass(frozen=True)
class StageKind:
    name: str
    check: Callable[[dict[str, Any], dict[str, Any]], None]  # (config, study data) -> raises ValueError
    run: Callable[[dict[str, Any], StageContext], tuple[Path, dict[str, Any]]]
    smoke: Callable[[dict[str, Any]], dict[str, Any]]
    epochs: Callable[[dict[str, Any]], int | None]
    needs_model: bool = True


STAGES: dict[str, StageKind] = {}


def register_stage(kind: StageKind) -> StageKind:
    STAGES[kind.name] = kind
    return kind


def stage_kind(name: str) -> StageKind:
    if name not in STAGES:
        raise ConfigError(f"unknown stage kind {name!r}; known: {', '.join(STAGES)}")
    return STAGES[name]


def _check(model: type[StrictModel], config: dict[str, Any], prefix: str = "") -> None:
    """Validate ``config``; the error names the key (under ``prefix``, e.g. ``finetune.``) in one line."""
    from pydantic import ValidationError

    try:
        model.model_validate(config)
    except ValidationError as exc:
        message = format_validation_error(exc, "").removeprefix(": ")
        raise ValueError(message.replace("key '", f"key '{prefix}", 1)) from None


def _check_finetune(config: dict[str, Any]) -> None:
    """Fine-tuning settings are trainer keys laid over the parent's training config: each must be one."""
    finetune = config.get("finetune")
    if isinstance(finetune, dict):
        _check(TrainConfig, finetune, "finetune.")


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config))


# ---- train ------------------------------------------------------------------------------------------------
TRAIN_RECIPES = ("defaults", "parent")


def _train_settings(config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    config = {key: value for key, value in config.items() if key != "recipe"}
    return {**config, "data": {**data, **config.get("data", {})}}


def _train_check(config: dict[str, Any], data: dict[str, Any]) -> None:
    recipe = config.get("recipe", "defaults")
    if recipe not in TRAIN_RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(TRAIN_RECIPES)}, not {recipe!r}")
    _check(TrainConfig, _train_settings(config, data))


def parent_recipe(source: Path) -> dict[str, Any]:
    """The training config that made ``source`` (its last training step), without what names that run: the
    keys a ``recipe: parent`` train stage is laid over, as prune and quantize fine-tunes are."""
    from slimbench.artifact import load_artifact, recipe_of, training_config

    base = training_config(load_artifact(source).lineage)
    if not base:
        raise ConfigError(f"recipe: parent, but {source} records no training step to take a recipe from")
    return recipe_of(base)


def _train_run(config: dict[str, Any], ctx: StageContext) -> tuple[Path, dict[str, Any]]:
    from slimbench.config import validate
    from slimbench.train import resume_training, train

    if (ctx.stage_dir / "last.pt").exists() and not (ctx.stage_dir / "model.pt").exists():
        teacher = (config.get("distill") or {}).get("teacher")  # where it is now, if the study has moved
        return ctx.stage_dir / "model.pt", resume_training(ctx.stage_dir, progress=ctx.progress, dataset=ctx.dataset,
                                                           teacher=teacher).metrics
    if config.get("recipe") == "parent":
        if ctx.source is None:
            raise ConfigError("recipe: parent needs a model before this stage (from: or checkpoint:)")
        # the parent's data section, split included, not the study's: the stage's own keys over it
        settings = merge(parent_recipe(ctx.source), {key: value for key, value in config.items() if key != "recipe"})
    else:
        settings = _train_settings(config, ctx.data)
    if ctx.source is not None and settings.get("init_from") is None:  # null: the model this stage starts from
        settings["init_from"] = str(ctx.source)
    result = train(validate(TrainConfig, settings, ctx.stage_dir.name), run_dir=ctx.stage_dir, progress=ctx.progress,
                   dataset=ctx.dataset)
    return result.model_path, result.metrics


def _train_smoke(config: dict[str, Any]) -> dict[str, Any]:
    # compile is switched off: compiling costs a minute or more per model on a CPU, which a one-epoch check on a
    # few hundred images does not need (the compiled path has a slow test of its own)
    config = _copy(config)
    config.update(epochs=1, report_test_each_epoch=False, compile=False)
    config.setdefault("data", {})["val_size"] = SMOKE_VAL_IMAGES
    config["batch_size"] = min(int(config.get("batch_size", 128)), 64)
    config.pop("early_stop_patience", None)
    if config.get("schedule", {}).get("milestones"):
        config["schedule"]["milestones"] = []
    return config


register_stage(StageKind("train", _train_check, _train_run, _train_smoke,
                         lambda c: int(c.get("epochs", TrainConfig.model_fields["epochs"].default)),
                         needs_model=False))


# ---- prune and quantize -----------------------------------------------------------------------------------
def _finetune_epochs(config: dict[str, Any]) -> int | None:
    finetune = config.get("finetune")
    if not isinstance(finetune, dict):
        return None
    return int(finetune.get("epochs", 0)) * int(config.get("steps", 1) or 1)


def _compression_check(model: type[StrictModel]) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """Prune and quantize stages: their own config, and trainer keys under ``finetune``."""
    def check(config: dict[str, Any], _data: dict[str, Any]) -> None:
        _check(model, config)
        _check_finetune(config)

    return check


def _smoke_finetune(config: dict[str, Any]) -> dict[str, Any]:
    config = _copy(config)
    if config.get("finetune"):
        # a parent trained on the full data (a committed checkpoint) holds out 5,000 validation images: more
        # than the smoke slice has
        data = {**(config["finetune"].get("data") or {}), "val_size": SMOKE_VAL_IMAGES}
        config["finetune"] = {**config["finetune"], "epochs": 1, "compile": False, "data": data}
    return config


def _prune_run(config: dict[str, Any], ctx: StageContext) -> tuple[Path, dict[str, Any]]:
    from slimbench.compress import prune
    from slimbench.config import validate

    assert ctx.source is not None
    result = prune(ctx.source, validate(PruneConfig, config, "prune"), ctx.stage_dir, dataset=ctx.dataset,
                   progress=ctx.progress)
    return result.model_path, result.metrics


def _prune_smoke(config: dict[str, Any]) -> dict[str, Any]:
    config = _smoke_finetune(config)
    if config.get("steps", 1) > 2:
        config["steps"] = 2
    return config


register_stage(StageKind("prune", _compression_check(PruneConfig), _prune_run, _prune_smoke, _finetune_epochs))


def _quantize_run(config: dict[str, Any], ctx: StageContext) -> tuple[Path, dict[str, Any]]:
    from slimbench.compress import quantize
    from slimbench.config import validate

    assert ctx.source is not None
    result = quantize(ctx.source, validate(QuantizeConfig, config, "quantize"), ctx.stage_dir, dataset=ctx.dataset,
                      progress=ctx.progress)
    return result.path, result.metrics


def _quantize_smoke(config: dict[str, Any]) -> dict[str, Any]:
    config = _smoke_finetune(config)
    config.update(calibration_size=64, parity_images=64, min_agreement=0.01)
    return config


register_stage(StageKind("quantize", _compression_check(QuantizeConfig), _quantize_run, _quantize_smoke,
                         lambda c: _finetune_epochs(c) if c.get("mode") == "qat" else None))


# ---- export -----------------------------------------------------------------------------------------------
class ExportConfig(StrictModel):
    """The options of ``slimbench export`` a study stage may set."""

    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    format: str = "onnx"  # a registered export format (slimbench.export.FORMATS): onnx, torchscript

    @field_validator("format")
    @classmethod
    def _registered(cls, value: str) -> str:
        from slimbench.export.stage import FORMATS

        if value not in FORMATS:
            raise ValueError(f"unknown export format {value!r}; choose one of {', '.join(FORMATS)}")
        return value
    dynamic_batch: bool = True
    batch_size: int = Field(1, gt=0)
    opset: int | None = Field(None, gt=0)
    parity_images: int = Field(500, gt=0)
    latency: bool = True


def _export_check(config: dict[str, Any], _data: dict[str, Any]) -> None:
    _check(ExportConfig, config)


def _export_run(config: dict[str, Any], ctx: StageContext) -> tuple[Path, dict[str, Any]]:
    from slimbench.config import validate
    from slimbench.export import export

    assert ctx.source is not None
    settings = validate(ExportConfig, config, "export").model_dump(exclude_none=True)
    exported = export(ctx.source, ctx.stage_dir, dataset=ctx.dataset, commands=[ctx.command] if ctx.command else None,
                      **settings)
    from slimbench.artifact import is_exported_file, read_sidecar

    # the accuracy the exported file recorded of itself (LiteRT runs every image of both splits)
    recorded = read_sidecar(exported.path).get("metrics") or {} if is_exported_file(exported.path) else {}
    return exported.path, {"parity": exported.parity, "card": str(exported.card), "format": settings["format"],
                           **{k: recorded[k] for k in ("val_acc", "test_acc") if isinstance(recorded.get(k), int | float)}}


def _export_smoke(config: dict[str, Any]) -> dict[str, Any]:
    return {**_copy(config), "parity_images": 64, "latency": False}


register_stage(StageKind("export", _export_check, _export_run, _export_smoke, lambda _: None))
