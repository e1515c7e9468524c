"""Training curves as a PNG in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from slimbench.plotting import save_figure


def plot_history(history: list[dict[str, Any]], path: str | Path, title: str = "",
                 train_objective: str = "cross-entropy") -> None:
    """Loss (left) and accuracy (right) per epoch for the train, validation and test splits.

    ``train_objective`` names what the train curve minimises (a distillation mix is not cross-entropy); the
    validation and test curves are always cross-entropy."""
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    curves = (("train", f"train ({train_objective})", "-"), ("val", "validation", "-"), ("test", "test (report only)", "--"))
    for key, label, style in curves:
        if f"{key}_loss" in history[0]:
            ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=label)
        if f"{key}_acc" in history[0]:
            ax_acc.plot(epochs, [100 * h[f"{key}_acc"] for h in history], style, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (validation, test: cross-entropy)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    plotted = [100 * h[k] for h in history for k in ("train_acc", "val_acc", "test_acc") if k in h]
    ax_acc.set_ylim(max(0.0, min(plotted) - 5), 100)
    ax_acc.axhline(90, color="grey", lw=0.8, ls=":")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)

