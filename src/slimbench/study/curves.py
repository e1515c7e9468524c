"""Validation curves of training runs side by side: is a new run tracking the one it should beat?

A source is a training log (``log.jsonl``), a directory holding one (a run, a kept model, a fine-tune), a model
file (the log beside it), or a directory with logs below it (a study's stage: one curve per fine-tune inside it).
``LABEL=PATH`` names a source; otherwise each curve is named by the shortest tail of its path that no other shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from slimbench.errors import ConfigError
from slimbench.study.compare import _labelled, distinct_labels
from slimbench.study.runner import StageState

LOG_FILE = "log.jsonl"


@dataclass
class Curve:
    """Validation accuracy (0-1) by epoch of one training run, read from its log."""

    label: str
    log: Path
    epochs: list[int]
    val_acc: list[float]

    @property
    def best(self) -> tuple[int, float] | None:
        """(epoch, accuracy) that validation selects: the best, the earliest of equals."""
        if not self.val_acc:
            return None
        index = max(range(len(self.val_acc)), key=lambda i: (self.val_acc[i], -i))
        return self.epochs[index], self.val_acc[index]

    def at(self, epoch: int) -> float | None:
        return dict(zip(self.epochs, self.val_acc, strict=True)).get(epoch)


def read_curve(log: Path, label: str) -> Curve:
    """The curve in ``log``; a line still being written (no newline yet) is left out, a broken one is an error.
    An epoch logged twice (a run resumed from an earlier checkpoint) keeps its last record."""
    try:
        text = log.read_text()
    except OSError as error:
        raise ConfigError(f"{log}: cannot read the training log ({error.strerror or error})") from error
    lines = text.split("\n")[:-1]  # the last piece is empty, or a record not finished yet
    by_epoch: dict[int, float] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            epoch, val_acc = record.get("epoch"), record.get("val_acc")
        except (json.JSONDecodeError, AttributeError) as error:
            raise ConfigError(f"{log}:{number}: not a training log record (one JSON object a line)") from error
        if isinstance(epoch, int) and isinstance(val_acc, int | float):
            by_epoch[epoch] = float(val_acc)
    epochs = sorted(by_epoch)
    return Curve(label, log, epochs, [by_epoch[e] for e in epochs])


def _logs(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.name == LOG_FILE else ([path.parent / LOG_FILE] if (path.parent / LOG_FILE).is_file()
                                                      else [])
    if (path / LOG_FILE).is_file():
        return [path / LOG_FILE]
    return sorted(path.glob(f"**/{LOG_FILE}")) if path.is_dir() else []


def load_curves(sources: list[str | Path]) -> list[Curve]:
    """One curve per training log the sources name, in the order given."""
    found: list[tuple[str | None, Path, Path]] = []  # label, source, log
    for source in sources:
        label, path = _labelled(source)
        if not path.exists():
            raise ConfigError(f"{path}: no such file or directory")
        logs = _logs(path)
        if not logs:
            raise ConfigError(f"{path}: no training log ({LOG_FILE}) here, beside it or below it")
        found.extend((label, path, log) for log in logs)
    def shown(path: Path, log: Path) -> Path:  # what names the curve: the source, or its log where it holds several
        several = sum(1 for _, other, _ in found if other == path) > 1
        return log.parent if several or path.is_file() else path

    names = distinct_labels([shown(path, log) for _, path, log in found], 1)
    curves = []
    for (label, path, log), name in zip(found, names, strict=True):
        if label and shown(path, log) != path and path.is_dir():
            label = f"{label} ({log.parent.relative_to(path)})"
        curves.append(read_curve(log, label or name))
    return curves


def plot_curves(curves: list[Curve], path: str | Path) -> Path | None:
    """Validation accuracy per epoch of the curves, overlaid, each one's selected epoch starred; None if none has
    an epoch to draw."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from slimbench.plotting import save_figure

    drawn = [curve for curve in curves if curve.epochs]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for curve in drawn:
        (line,) = ax.plot(curve.epochs, [100 * v for v in curve.val_acc], label=curve.label,
                          marker="o" if len(curve.epochs) <= 30 else None, markersize=3)  # a 1-epoch run shows
        best = curve.best
        if best is not None and len(curve.epochs) > 1:
            ax.plot([best[0]], [100 * best[1]], marker="*", markersize=11, color=line.get_color(), zorder=3)
    last_epoch = max(max(curve.epochs) for curve in drawn)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10], min_n_ticks=1))
    ax.set_xlim(0.5, last_epoch + 0.5)  # a 1-epoch run gets one tick, 1, not fractions
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, title="star: the epoch validation selects" if last_epoch > 1 else None,
              title_fontsize=7)
    save_figure(fig, path)
    return Path(path)


def stage_curves(states: list[StageState]) -> list[Curve]:
    """The curves of the training logs in a study's stage directories, named by experiment (and by stage and
    step where an experiment trains more than once)."""
    found = [(state, log) for state in states if state.kind != "checkpoint" for log in _logs(state.directory)]
    curves = []
    for state, log in found:
        label = state.experiment
        if sum(1 for other, _ in found if other.experiment == state.experiment) > 1:
            steps = sum(1 for other, _ in found if other is state) > 1  # a pruning schedule's steps
            step = f" {log.parent.relative_to(state.directory).parent}" if steps else ""
            label += f" ({state.index}. {state.kind}{step})"
        curves.append(read_curve(log, label))
    return curves
