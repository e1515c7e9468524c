"""Shared figure output for every stage's plots (headless backend, atomic PNG writes)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from slimbench.artifact import atomic_write


def save_figure(fig: plt.Figure, path: str | Path, svg: bool = False) -> None:
    """Render to PNG (and SVG beside it when asked) in memory, then write atomically: never half a picture."""
    fig.tight_layout()
    outputs = [(Path(path), "png")] + ([(Path(path).with_suffix(".svg"), "svg")] if svg else [])
    for target, fmt in outputs:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight")
        atomic_write(target, buffer.getvalue())
    plt.close(fig)
