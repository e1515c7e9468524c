"""Run a study: every experiment's stages in order, each stage keyed by a hash of what defines it.

A stage's key covers its kind, its resolved config (``@name`` references replaced by the key of the stage
that made that model), the key of the stage it starts from, the data and smoke mode. Its directory is
``OUT/stages/<kind>-<key>``; ``done.json`` there marks it finished, so a re-run skips it, and an interrupted
stage resumes inside its own directory (training from ``last.pt``, pruning and QAT from their steps).
Experiments talk to each other only through the artifacts their stages write.

Backends: ``local`` runs experiments one after another in this process; ``ray`` runs each experiment as a
Ray task (its ``cpus``/``gpus`` request), in waves that respect ``from``/``@name`` dependencies, on a local
Ray instance or a cluster (``address``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from slimbench.artifact import atomic_write, is_exported_file, load_artifact, now_iso
from slimbench.data import ImageDataset, load_dataset
from slimbench.errors import ConfigError, SlimbenchError
from slimbench.study.spec import Experiment, Study, references
from slimbench.study.stages import StageContext, stage_kind
from slimbench.train import TrainingInterrupted

SMOKE_TRAIN_IMAGES, SMOKE_TEST_IMAGES = 512, 256
RESULTS_FILE = "results.json"
RECENT_EPOCHS = 5  # the time-left estimate follows the median of this many latest epochs


def smoke_dataset(dataset: ImageDataset) -> ImageDataset:
    """A seeded slice of the dataset: every stage runs for real, on few images."""
    pick = torch.randperm(len(dataset.train_y), generator=torch.Generator().manual_seed(0))[:SMOKE_TRAIN_IMAGES]
    return dataclasses.replace(dataset, train_x=dataset.train_x[pick], train_y=dataset.train_y[pick],
                               test_x=dataset.test_x[:SMOKE_TEST_IMAGES], test_y=dataset.test_y[:SMOKE_TEST_IMAGES],
                               source=f"{dataset.source} (smoke slice)")


def smoke_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The same stage shrunk to one epoch and small calibration/parity sets, in eager mode (each kind says how)."""
    return stage_kind(kind).smoke(config)


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _resolve(value: Any, finals: dict[str, tuple[str, Path]]) -> Any:
    """``@name`` -> the final model path of that experiment; the same walk gives the key of each reference."""
    if isinstance(value, str) and value.startswith("@"):
        return str(finals[value[1:]][1])
    if isinstance(value, dict):
        return {k: _resolve(v, finals) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, finals) for v in value]
    return value


def _keyed(value: Any, finals: dict[str, tuple[str, Path]]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return f"stage:{finals[value[1:]][0]}"
    if isinstance(value, dict):
        return {k: _keyed(v, finals) for k, v in value.items()}
    if isinstance(value, list):
        return [_keyed(v, finals) for v in value]
    return value


def _stage_plan(study: Study, experiment: Experiment, start_key: str, out_dir: Path, smoke: bool,
                finals_keys: dict[str, tuple[str, Path]]) -> list[tuple[str, dict[str, Any], str, Path]]:
    """(kind, config, key, directory) of each stage: the keys chain, so they are known before anything runs."""
    key, planned = start_key, []
    for stage in experiment.stages:
        kind, raw = next(iter(stage.items()))
        config = smoke_config(kind, raw or {}) if smoke else (raw or {})
        key = _key({"kind": kind, "config": _keyed(config, finals_keys), "input": key, "data": study.data,
                    "smoke": smoke})
        planned.append((kind, config, key, out_dir / "stages" / f"{kind}-{key}"))
    return planned


def _start(experiment: Experiment, finals: dict[str, tuple[str, Path]]) -> tuple[str, Path | None]:
    """The key and model an experiment starts from: another experiment's final model, a checkpoint, or nothing."""
    if experiment.start:
        return finals[experiment.start]
    if experiment.checkpoint:
        path = Path(experiment.checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"experiment {experiment.name!r}: checkpoint {path} does not exist")
        stat = path.stat()
        return f"file:{_file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)}", path
    return "", None


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """The checkpoint's contents, not its path, key what follows it: a moved file keeps its stages, a changed one
    does not (mtime and size only make the cache forget a rewritten file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _plans(study: Study, out_dir: Path, smoke: bool) -> dict[str, tuple[str, list[tuple[str, dict[str, Any], str, Path]]]]:
    """Every experiment's final stage key and planned stages, computed from the file alone."""
    finals_keys: dict[str, tuple[str, Path]] = {}
    plans = {}
    for experiment in study.experiments:
        try:
            start_key = _start(experiment, finals_keys)[0]
        except ConfigError:
            # a checkpoint not there (yet): a key no stage has, so the rows that need it plan as pending and
            # the other rows still plan; running it, or keeping or inspecting it, says what is missing
            start_key = f"missing:{experiment.checkpoint}"
        planned = _stage_plan(study, experiment, start_key, out_dir, smoke, finals_keys)
        finals_keys[experiment.name] = (planned[-1][2] if planned else start_key, Path())
        plans[experiment.name] = (finals_keys[experiment.name][0], planned)
    return plans


@dataclasses.dataclass
class StageState:
    """Where one stage of a study stands on disk (``slimbench study status``)."""

    experiment: str
    index: int
    kind: str
    key: str
    directory: Path
    state: str  # done, running, interrupted, pending; given or missing (a checkpoint the experiment starts from)
    epochs_done: int = 0
    epochs_planned: int | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    wall_s: float | None = None
    epoch_s: float | None = None  # median seconds per epoch so far

    @property
    def seconds_left(self) -> float | None:
        """At most this long still to train (early stopping may end it sooner), from the epochs so far."""
        if self.state == "done" or not self.epochs_planned or not self.epoch_s:
            return None
        return max(self.epochs_planned - self.epochs_done, 0) * self.epoch_s


def _is_locked(stage_dir: Path) -> bool:
    try:
        import fcntl
    except ImportError:
        return False
    lock = stage_dir / ".lock"
    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _epochs_logged(stage_dir: Path) -> tuple[int, float | None, dict[str, Any] | None]:
    """Training epochs on disk in a stage (its own run, or the fine-tunes of prune and QAT steps), their
    typical duration with evaluation, and the best-validation epoch so far of the newest run (a later pruning
    step's counts). The duration is the median of the last few epochs: an epoch slowed by a paused or shared
    machine does not skew it, and hours of contended epochs long ago do not outvote the machine as it is now."""
    seconds, best = [], None
    for log in sorted(stage_dir.rglob("log.jsonl"), key=lambda path: path.stat().st_mtime):
        records = []
        for line in log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        seconds += [float(r.get("epoch_s") or 0) + float(r.get("eval_s") or 0) for r in records]
        best = max((r for r in records if r.get("val_acc") is not None), key=lambda r: r["val_acc"], default=best)
    recent = [s for s in seconds if s > 0][-RECENT_EPOCHS:]
    return len(seconds), (statistics.median(recent) if recent else None), best


def study_status(study: Study, out_dir: str | Path, smoke: bool = False,
                 only: list[str] | None = None) -> list[StageState]:
    """Every stage of the study (or of ``only`` and what they need) with its state, read from disk only."""
    out_dir = Path(out_dir)
    chosen = _chosen(study, only)
    states = []
    experiments = {e.name: e for e in study.experiments}
    for name, (_, planned) in _plans(study, out_dir, smoke).items():
        if name not in chosen:
            continue
        checkpoint = experiments[name].checkpoint
        if checkpoint and not Path(checkpoint).is_file():
            states.append(StageState(name, 0, "checkpoint", "", Path(checkpoint), "missing"))
        elif checkpoint:  # the model it starts from, given rather than made by the study
            metrics = load_artifact(checkpoint).metrics
            states.append(StageState(name, 0, "checkpoint", "", Path(checkpoint), "given",
                                     val_acc=metrics.get("val_acc"), test_acc=metrics.get("test_acc")))
        for index, (kind, config, key, stage_dir) in enumerate(planned, start=1):
            state = StageState(name, index, kind, key, stage_dir, "pending")
            state.epochs_planned = stage_kind(kind).epochs(config)
            if (stage_dir / "done.json").exists():
                record = json.loads((stage_dir / "done.json").read_text())
                metrics = record.get("metrics") or {}
                state.state, state.wall_s = "done", record.get("wall_s")
                state.val_acc, state.test_acc = metrics.get("val_acc"), metrics.get("test_acc")
            elif stage_dir.is_dir():
                state.state = "running" if _is_locked(stage_dir) else "interrupted"
            if stage_dir.is_dir():
                state.epochs_done, state.epoch_s, best = _epochs_logged(stage_dir)
                if state.state != "done" and best is not None:  # so far: the epoch validation would select now
                    state.val_acc, state.test_acc = best.get("val_acc"), best.get("test_acc")
            states.append(state)
    return states


def _chosen(study: Study, only: list[str] | None) -> set[str]:
    chosen = set(only or [e.name for e in study.experiments])
    unknown = chosen - {e.name for e in study.experiments}
    if unknown:
        raise ConfigError(f"no experiment named {', '.join(sorted(unknown))} in study {study.name}")
    for experiment in reversed(study.experiments):  # what the chosen experiments need runs too
        if experiment.name in chosen:
            chosen |= references(experiment)
    return chosen


def _run_stage(kind: str, config: dict[str, Any], source: Path | None, stage_dir: Path, dataset: ImageDataset,
               data: dict[str, Any], progress: bool, command: str | None = None) -> tuple[Path, dict[str, Any]]:
    """One stage through the public API of its package; returns its output model and metrics."""
    stage = stage_kind(kind)
    if stage.needs_model and source is None:
        raise ConfigError(f"a {kind} stage needs a model: put a train stage before it or start from an experiment")
    return stage.run(config, StageContext(source, stage_dir, dataset, data, progress, command))


def is_artifact(path: Path) -> bool:
    """A slimbench model artifact (what later stages and rows read), not a TorchScript export beside one."""
    return path.suffix == ".pt" and not path.name.endswith(".torchscript.pt")


def _portable(output: Path, stage_dir: Path) -> str:
    """A stage's output as done.json keeps it: relative to the stage directory, so that a study directory
    copied elsewhere (back from a GPU machine, say) still finds every finished stage's model."""
    with contextlib.suppress(ValueError):
        return str(Path(output).resolve().relative_to(stage_dir.resolve()))
    return str(output)


def stage_output(record: dict[str, Any], stage_dir: Path) -> Path:
    """The output file a done.json names, where the stage directory is now. Records written before outputs
    were kept relative hold the absolute path of the machine that ran them: their part below the stage's
    own directory is taken from here."""
    output = Path(record["output"])
    if not output.is_absolute():
        return stage_dir / output
    below = [i for i, part in enumerate(output.parts[:-1]) if part == stage_dir.name]
    return stage_dir.joinpath(*output.parts[below[-1] + 1:]) if below else output


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock (released by the OS if its holder dies); none where flock is absent."""
    try:
        import fcntl
    except ImportError:  # not POSIX: studies there run one process at a time anyway
        yield
        return
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_experiment(study: Study, experiment: Experiment, out_dir: Path, dataset: ImageDataset,
                   finals: dict[str, tuple[str, Path]], smoke: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or skip, or resume) each stage of ``experiment``; returns its result row."""
    key, model = _start(experiment, finals)
    if experiment.checkpoint and not experiment.stages:
        log(f"{experiment.name}: the checkpoint {experiment.checkpoint}, measured as it is")
    last_pt = model
    stage_records = []
    started = time.perf_counter()
    planned = _stage_plan(study, experiment, key, out_dir, smoke, finals)
    for index, (kind, config, key, stage_dir) in enumerate(planned, start=1):
        done = stage_dir / "done.json"
        label = f"{experiment.name} [{index}/{len(planned)}] {kind}"
        stage_dir.mkdir(parents=True, exist_ok=True)
        with _locked(stage_dir / ".lock"):  # two Ray tasks sharing a stage: one runs it, the other then reads it
            if done.exists():
                record = json.loads(done.read_text())
                log(f"{label}: done before ({stage_dir.name}), skipped")
            else:
                log(f"{label}: running in {stage_dir}")
                t0 = time.perf_counter()
                try:
                    output, metrics = _run_stage(kind, _resolve(config, finals), last_pt, stage_dir, dataset,
                                                 study.data, progress, study.run_command(experiment.name, out_dir, smoke))
                except TrainingInterrupted as exc:  # the study resumes its stages itself
                    raise exc.continue_with("run the study again (`slimbench study run`)") from None
                record = {"kind": kind, "key": key, "output": _portable(output, stage_dir), "finished": now_iso(),
                          "wall_s": time.perf_counter() - t0, "metrics": metrics}
                atomic_write(done, json.dumps(record, indent=2, default=str).encode())
        model = stage_output(record, stage_dir)
        record = {**record, "output": str(model)}
        if is_artifact(model):
            last_pt = model
        stage_records.append(record)
    finals[experiment.name] = (key, last_pt if last_pt is not None else model)
    # a TorchScript export is measured through the artifact it was made from (the row names the export too);
    # ONNX and LiteRT files through their sidecars: their own bits and accuracy
    measured = model if model is None or is_artifact(model) or is_exported_file(model) else last_pt
    row = result_row(study, experiment, measured, stage_records)
    if measured != model:
        row["export_path"] = str(model)
    row["study_wall_s"] = time.perf_counter() - started
    row["key"] = key  # the final stage's key: a row from an older file counts only while its key still matches
    return row


def result_row(study: Study, experiment: Experiment, model: Path | None, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """What compare and report show for one experiment: measured on its final model, beside what was reported."""
    from slimbench.score import compute_score, inputs_from_artifact, load_rule

    rule = load_rule(study.score_rule)
    row: dict[str, Any] = {"experiment": experiment.name, "model_path": str(model), "stages": [s["kind"] for s in stages],
                           "stage_dirs": [str(Path(s["output"]).parent) for s in stages]}
    inputs, test_acc = inputs_from_artifact(model, rule)
    score = compute_score(inputs, rule)
    metrics: dict[str, Any] = {}
    for record in stages:
        metrics.update({k: v for k, v in (record.get("metrics") or {}).items() if isinstance(v, int | float | str)})
    if not stages and model is not None and model.suffix == ".pt":  # a checkpoint as it is: what it recorded
        metrics = {k: v for k, v in load_artifact(model).metrics.items() if isinstance(v, int | float | str)}
    row.update(
        val_acc=metrics.get("val_acc"), test_acc=test_acc if test_acc is not None else metrics.get("test_acc"),
        params=int(inputs.w), macs=int(inputs.f), qw=inputs.qw, qa=inputs.qa, op_bits=inputs.max_bits,
        ps=inputs.ps, pu=inputs.pu, score=score.total, score_rule=rule.name,
        size_bytes=int(inputs.w * inputs.qw / 8),
        train_s=_training_seconds(stages),
        spec=_spec_of(model),
    )
    if model is not None:  # what a microcontroller asks first: flash and RAM at the stored bits
        from slimbench.measure import memory_of

        row.update(memory_of(model) or {})
    row["eligible"] = row["test_acc"] is not None and row["test_acc"] >= rule.min_accuracy
    if experiment.reported is not None:
        row["reported"] = experiment.reported.model_dump(exclude_none=True)
    if experiment.choices:
        row["choices"] = experiment.choices
    return row


def _training_seconds(stages: list[dict[str, Any]]) -> float | None:
    """Seconds the experiment's own stages trained; None (shown "-") when none trained, e.g. int8 or export."""
    seconds = [(record.get("metrics") or {}).get("train_seconds") for record in stages]
    trained = [float(value) for value in seconds if isinstance(value, int | float)]
    return sum(trained) if trained else None


def _spec_of(model: Path | None) -> dict[str, Any] | None:
    if model is None:
        return None
    if is_exported_file(model):
        from slimbench.artifact import read_sidecar

        return read_sidecar(model).get("spec")
    return load_artifact(model).spec


def _order(study: Study) -> list[list[Experiment]]:
    """Experiments in waves: each wave needs only experiments of earlier waves."""
    depth: dict[str, int] = {}
    for experiment in study.experiments:
        depth[experiment.name] = 1 + max((depth[r] for r in references(experiment)), default=-1)
    waves: list[list[Experiment]] = [[] for _ in range(max(depth.values()) + 1)]
    for experiment in study.experiments:
        waves[depth[experiment.name]].append(experiment)
    return waves


def run_study(study: Study, out_dir: str | Path, backend: str = "local", smoke: bool = False,
              dataset: ImageDataset | None = None, address: str | None = None, progress: bool = True,
              only: list[str] | None = None, log: Callable[[str], None] = print,
              data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Run every experiment of ``study`` into ``out_dir`` (resumable); writes ``results.json`` and returns its rows."""
    study.check_stages()  # before anything runs or is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "study.json", json.dumps(study.model_dump(mode="json", by_alias=True), indent=2).encode())
    chosen = _chosen(study, only)

    def write_results(rows: list[dict[str, Any]]) -> None:  # after every experiment
        write_rows(study, out_dir, smoke, rows)

    if backend == "ray":
        rows = _run_ray(study, out_dir, smoke, address, chosen, log, write_results, data_dir)
    elif backend == "local":
        data = dataset if dataset is not None else _load_data(study, data_dir)
        data = smoke_dataset(data) if smoke else data
        finals: dict[str, tuple[str, Path]] = {}
        rows = []
        for experiment in study.experiments:
            if experiment.name in chosen:
                rows.append(run_experiment(study, experiment, out_dir, data, finals, smoke, progress, log))
                write_results(rows)
    else:
        raise ConfigError(f"unknown backend {backend!r}: local or ray")
    write_results(rows)
    return rows


def write_rows(study: Study, out_dir: Path, smoke: bool, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``rows`` into results.json beside the rows already there that are still valid (same final stage key).
    A study stopped half-way keeps its finished rows. The file is read again under a lock, so that processes
    running other experiments of the study into the same directory (several `study run --only` on one big
    machine, or a merge) keep each other's rows. Returns the rows written."""
    fresh = {row["experiment"]: row for row in rows}
    with _locked(out_dir / ".results.lock"):
        earlier = _earlier_rows(study, out_dir, smoke)
        merged = [fresh.get(e.name) or earlier.get(e.name) for e in study.experiments]
        payload = {"study": study.name, "smoke": smoke, "finished": now_iso(), "rows": [r for r in merged if r]}
        atomic_write(out_dir / RESULTS_FILE, json.dumps(payload, indent=2, default=str).encode())
    return payload["rows"]


def _earlier_rows(study: Study, out_dir: Path, smoke: bool) -> dict[str, dict[str, Any]]:
    """Rows of an earlier results.json whose experiments still end in the same stage (same key)."""
    path = out_dir / RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    if bool(payload.get("smoke")) != smoke:
        return {}
    current = {name: final_key for name, (final_key, _) in _plans(study, out_dir, smoke).items()}
    return {row["experiment"]: row for row in payload.get("rows", [])
            if row.get("key") is not None and current.get(row.get("experiment")) == row["key"]}


def _load_data(study: Study, data_dir: str | Path | None = None) -> ImageDataset:
    """The study's dataset; ``data_dir`` (the CLI's --data-dir) says where its files are without entering the
    stage keys: the same data found elsewhere is the same study."""
    data = study.data
    return load_dataset(data.get("name", "cifar10"), data_dir if data_dir is not None else data.get("dir"),
                        download=bool(data.get("download", True)))


def _ray_experiment(study_json: dict[str, Any], study_file: str | None, name: str, out_dir: str, smoke: bool,
                    finals: dict[str, tuple[str, str]],
                    data_dir: str | None = None) -> tuple[dict[str, Any], tuple[str, str]]:
    study = Study.model_validate(study_json).read_from(study_file)
    experiment = next(e for e in study.experiments if e.name == name)
    data = _load_data(study, data_dir)
    data = smoke_dataset(data) if smoke else data
    known = {k: (v[0], Path(v[1])) for k, v in finals.items()}
    row = run_experiment(study, experiment, Path(out_dir), data, known, smoke, progress=False, log=lambda _: None)
    key, path = known[name]
    return row, (key, str(path))


def _run_ray(study: Study, out_dir: Path, smoke: bool, address: str | None, chosen: set[str],
             log: Callable[[str], None], on_rows: Callable[[list[dict[str, Any]]], None],
             data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise SlimbenchError("the ray backend needs Ray: pip install 'slimbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        remote = ray.remote(_ray_experiment)
        finals: dict[str, tuple[str, str]] = {}
        rows: dict[str, dict[str, Any]] = {}
        study_json = study.model_dump(mode="json", by_alias=True)

        def in_order() -> list[dict[str, Any]]:
            return [rows[e.name] for e in study.experiments if e.name in rows]

        for wave in _order(study):
            pending = {remote.options(num_cpus=e.cpus, num_gpus=e.gpus).remote(
                study_json, study.file, e.name, str(out_dir.resolve()), smoke, dict(finals),
                None if data_dir is None else str(data_dir)): e.name
                for e in wave if e.name in chosen}
            while pending:  # whichever finishes first is recorded first
                [future], _ = ray.wait(list(pending), num_returns=1)
                name = pending.pop(future)
                rows[name], finals[name] = ray.get(future)
                log(f"{name}: done on Ray")
                on_rows(in_order())
        return in_order()
    finally:
        if started_here:
            ray.shutdown()
