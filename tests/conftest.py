from __future__ import annotations

import os
from pathlib import Path

import pytest

from slimbench.data import make_synthetic

REAL_DATA = Path(os.environ.get("SLIMBENCH_DATA", Path(__file__).resolve().parents[2] / "shared/data/cifar10"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache or data folder, or writes ./runs, unless it asks to."""
    monkeypatch.setenv("SLIMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SLIMBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("SLIMBENCH_DATA", raising=False)
    monkeypatch.delenv("SLIMBENCH_CIFAR_URL", raising=False)


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic(num_train=512, num_test=128)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA / "test.npz").exists():
        pytest.skip(f"real CIFAR-10 not found at {REAL_DATA}")
    return REAL_DATA
