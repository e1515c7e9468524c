"""A rich progress bar for training: loss, accuracy, images/s and ETA, plus one line per epoch."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, epochs: int, steps_per_epoch: int, batch_size: int, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  {task.fields[ips]:.0f} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            transient=True,
        )
        self.task: Any = None
        self.epoch_start = 0.0

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def start_epoch(self, epoch: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.epoch_start = time.perf_counter()
        self.task = self.progress.add_task("train", total=self.steps, epoch=epoch + 1, epochs=self.epochs,
                                           loss=float("nan"), acc=0.0, ips=0.0)

    def advance(self, step: int, loss: float, acc: float) -> None:
        elapsed = max(1e-9, time.perf_counter() - self.epoch_start)
        self.progress.update(self.task, completed=step, loss=loss, acc=acc, ips=step * self.batch_size / elapsed)

    def end_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {record['epoch']:>3}/{self.epochs}", f"loss {record['train_loss']:.3f}",
                 f"train {record['train_acc']:.2%}"]
        if "val_acc" in record:
            parts.append(f"val {record['val_acc']:.2%}")
        if "test_acc" in record:
            parts.append(f"test {record['test_acc']:.2%}")
        parts += [f"{record['images_per_s']:.0f} img/s", f"{record['epoch_s']:.0f}s"]
        self.progress.console.print("  ".join(parts))

    def note(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message)
