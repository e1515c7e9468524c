"""Where a command writes: ``runs/<name>/`` under ``$SLIMBENCH_RUNS`` or ``./runs``."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

RUNS_ENV = "SLIMBENCH_RUNS"


def default_runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV, "runs"))


def make_run_dir(name: str | None, prefix: str, root: str | Path | None = None) -> Path:
    """A fresh run folder; a clash with an existing name gets a numeric suffix, never an overwrite."""
    root = Path(root) if root is not None else default_runs_root()
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name) if name else f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"
    candidate = root / base
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{base}-{suffix}"
    candidate.mkdir(parents=True)
    return candidate
