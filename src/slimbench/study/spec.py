"""Study files: experiments made of stages, as data.

```yaml
name: quickstart
data: {name: cifar10}            # the dataset every stage uses (train stages inherit it)
experiments:
  - name: resnet20
    reported: {val_acc: 0.9127, params: 272474, source: "brief, ResNet 20"}   # a figure to compare with
    stages:
      - train: {model: {model: resnet20}, epochs: 60}
      - prune: {kind: structured, ratio: 0.3, finetune: {epochs: 15}}
      - quantize: {mode: int8}
  - name: student
    from: resnet20                # starts from that experiment's final model
    stages:
      - train: {model: {model: resnet20, width: 0.5}, distill: {teacher: "@resnet20"}}
  - name: mine
    checkpoint: runs/mine/model.pt   # starts from a model trained before (relative to this file's folder);
    stages:                          # with no stages, the experiment is that model, measured as it is
      - quantize: {mode: int8}
```

A stage is a mapping with one key: ``train``, ``prune``, ``quantize`` or ``export``; its value is the same
config the command of that name takes. ``"@name"`` anywhere in a value means the final model of experiment
``name``. A ``train`` stage after another stage fine-tunes that stage's model.

A ``train`` stage may start from a committed training config, ``{config: ../configs/x.yaml, ...}`` (relative to
the study file's folder): the file's keys, with the stage's other keys laid over them. The file's ``init_from``
must then be overridden where the stage starts from a model (a stage before it, ``from`` or ``checkpoint``):
``init_from: null`` means that model, so a recipe of runs made one after another is one experiment::

    - name: strong
      stages:
        - train: {config: ../configs/resnet20_strong_kd.yaml, distill: {teacher: "@teacher"}}
        - train: {config: ../configs/resnet20_strong.yaml, init_from: null, distill: {teacher: "@teacher"}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from slimbench.config import StrictModel, merge, read_yaml, validate
from slimbench.errors import ConfigError
from slimbench.study.stages import STAGES


class Reported(StrictModel):
    """A figure published elsewhere (the brief, a paper), shown beside what slimbench measures."""

    source: str
    val_acc: float | None = None
    test_acc: float | None = None
    params: int | None = None
    macs: int | None = None
    score: float | None = None
    note: str | None = None


class Experiment(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    start: str | None = Field(None, alias="from")  # another experiment whose final model this one starts from
    checkpoint: str | None = None  # or a model artifact file; its contents (SHA-256) key the stages after it
    stages: list[dict[str, Any]] = []
    reported: Reported | None = None
    choices: str | None = None  # where the source is ambiguous: what this file chose, and why
    cpus: float = Field(1, gt=0)  # resources one experiment asks of a Ray cluster
    gpus: float = Field(0, ge=0)

    @field_validator("stages")
    @classmethod
    def _one_kind_per_stage(cls, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, stage in enumerate(stages):
            if len(stage) != 1 or next(iter(stage)) not in STAGES:
                raise ValueError(f"stage {i + 1} must be one of {', '.join(STAGES)} with its config, "
                                 f"got keys {list(stage)}")
            if not isinstance(next(iter(stage.values())) or {}, dict):
                raise ValueError(f"stage {i + 1}: its config must be a mapping")
        return stages

    @model_validator(mode="after")
    def _one_start(self) -> Experiment:
        if self.start and self.checkpoint:
            raise ValueError(f"experiment {self.name!r}: give `from` or `checkpoint`, not both")
        if not self.stages and not self.checkpoint:
            raise ValueError(f"experiment {self.name!r} needs stages (or a checkpoint, to measure it as it is)")
        return self


class Study(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: dict[str, Any] = {"name": "cifar10"}
    score_rule: str = "brief"
    experiments: list[Experiment] = Field(min_length=1)
    # the YAML file it came from, as the user named it (model cards print the command that remakes a stage)
    _file: str | None = PrivateAttr(default=None)

    @property
    def file(self) -> str | None:
        return self._file

    def read_from(self, file: str | Path | None) -> Study:
        """This study, remembering the file it was read from."""
        self._file = None if file is None else str(file)
        return self

    def run_command(self, experiment: str, out_dir: Path, smoke: bool = False) -> str:
        """The command that runs (or re-runs) one experiment of this study into ``out_dir``."""
        if self._file is None:  # built in Python, not read from a file
            return f"run_study(<study {self.name}>, {str(out_dir)!r}, smoke={smoke}, only=[{experiment!r}])"
        return f"slimbench study run {self._file} --only {experiment} --out {out_dir}" + (" --smoke" if smoke else "")

    def check_stages(self, source: str | None = None) -> Study:
        """Every stage's config against its kind's model, before anything runs: a misspelled key in the last stage
        of a study fails now, not after hours of training. Raises ConfigError naming experiment, stage and key."""
        where = source or self._file or f"study {self.name}"
        for experiment in self.experiments:
            for index, stage in enumerate(experiment.stages, start=1):
                kind, config = next(iter(stage.items()))
                starts_from_model = index > 1 or experiment.start is not None or experiment.checkpoint is not None
                try:
                    if kind == "train" and starts_from_model and (config or {}).get("init_from"):
                        raise ValueError("init_from names a file, but this stage starts from the model before it; "
                                         "set init_from: null to start from that model")
                    if (kind == "train" and not starts_from_model and (config or {}).get("fresh_weights")
                            and not (config or {}).get("init_from")):
                        raise ValueError("fresh_weights keeps the structure of the model this stage starts from, and "
                                         "there is none (add from:, checkpoint: or init_from)")
                    if kind == "train" and not starts_from_model and (config or {}).get("recipe") == "parent":
                        raise ValueError("recipe: parent takes the recipe of the model before this stage, and there "
                                         "is none (add from: or checkpoint:)")
                    STAGES[kind].check(config or {}, self.data)
                except ValueError as exc:
                    raise ConfigError(f"{where}: experiment {experiment.name!r}, stage {index} ({kind}): {exc}") from None
        return self

    @model_validator(mode="after")
    def _references(self) -> Study:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique: {names}")
        for experiment in self.experiments:
            for ref in references(experiment):
                if ref not in names:
                    raise ValueError(f"experiment {experiment.name!r} refers to unknown experiment {ref!r}")
                if names.index(ref) >= names.index(experiment.name):
                    raise ValueError(f"experiment {experiment.name!r} refers to {ref!r}, which must come before it")
        return self


def references(experiment: Experiment) -> set[str]:
    """Experiments whose final model this one needs (``from`` and every ``@name``)."""
    found = {experiment.start} if experiment.start else set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("@"):
            found.add(value[1:])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(experiment.stages)
    return found


def _with_config_files(raw: dict[str, Any], folder: Path, source: str) -> dict[str, Any]:
    """Each ``train: {config: FILE, ...}`` replaced by FILE's keys with the stage's others laid over them."""
    experiments = raw.get("experiments")
    for experiment in experiments if isinstance(experiments, list) else []:
        stages = experiment.get("stages") if isinstance(experiment, dict) else None
        for index, stage in enumerate(stages if isinstance(stages, list) else [], start=1):
            settings = stage.get("train") if isinstance(stage, dict) else None
            if not isinstance(settings, dict) or "config" not in settings:
                continue
            file = Path(str(settings["config"])).expanduser()
            file = file if file.is_absolute() else folder / file
            where = f"{source}: experiment {experiment.get('name')!r}, stage {index} (train)"
            if not file.is_file():
                raise ConfigError(f"{where}: config {settings['config']} does not exist (paths are relative to the "
                                  "study file's folder)")
            overrides = {key: value for key, value in settings.items() if key != "config"}
            stage["train"] = merge(read_yaml(file), overrides)
    return raw


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    study = validate(Study, _with_config_files(read_yaml(path), path.parent, str(path)), str(path))
    for experiment in study.experiments:  # a checkpoint path in the file means: beside the file
        if experiment.checkpoint and not Path(experiment.checkpoint).expanduser().is_absolute():
            experiment.checkpoint = str((path.parent / experiment.checkpoint).resolve())
    return study.read_from(path).check_stages()
