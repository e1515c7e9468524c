"""Shared figure output for every stage's plots (headless backend, atomic PNG writes)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from slimbench.artifact import atomic_write


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Render to PNG in memory, then write atomically: a crash never leaves half a picture."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
