from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from slimbench.data import make_synthetic


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (`make test` runs one worker per core), each worker gets its share of the cores: torch
    would otherwise give every worker all of them, and the workers would contend for each core (and so would the
    processes the tests start)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        share = max(1, cores // workers)
        torch.set_num_threads(share)
        os.environ["OMP_NUM_THREADS"] = str(share)  # the CLI and torchrun processes that tests start
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # the workers start with COLUMNS=80 and LINES=24 that no shell set; the CLI would wrap its tables at 80
        # columns there, and only there
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)


_share_cores_between_workers()

REAL_DATA = Path(os.environ.get("SLIMBENCH_DATA", Path(__file__).resolve().parents[2] / "shared/data/cifar10"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache or data folder, or writes ./runs, unless it asks to."""
    monkeypatch.setenv("SLIMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SLIMBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("SLIMBENCH_DATA", raising=False)
    monkeypatch.delenv("SLIMBENCH_CIFAR_URL", raising=False)
    monkeypatch.delenv("SLIMBENCH_HOST", raising=False)  # tests that need a host profile assume it themselves


# The two CPU classes of the project's machines: every capability branch runs on whichever CI lands on.
HOST_PROFILES = ("avx2", "avx512-bf16")


@pytest.fixture(params=HOST_PROFILES)
def host_profile(request: pytest.FixtureRequest):
    """Run the test as if on an AVX2-only CPU, then as if on an AVX-512-BF16/VNNI one."""
    from slimbench.hardware import assume_host

    with assume_host(request.param) as chosen:
        yield chosen


@pytest.fixture
def interrupt_next_training(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The next `slimbench.train.train` call stops after its first epoch as Ctrl-C would; later ones run whole.
    The fixture's value arms it again, for a test that interrupts a later training too."""
    import slimbench.train as training

    real_train = training.train

    def stop_after_first_epoch(*args, **kwargs):
        monkeypatch.setattr(training, "train", real_train)

        def stop(record):
            raise KeyboardInterrupt

        return real_train(*args, on_epoch=stop, **kwargs)

    def arm() -> None:
        monkeypatch.setattr(training, "train", stop_after_first_epoch)

    arm()
    return arm


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic(num_train=512, num_test=128)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA / "test.npz").exists():
        pytest.skip(f"real CIFAR-10 not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic) -> Path:
    """A small ResNet-20 that really learned the synthetic task (quantization agreement means little on noise);
    shared by the quantization, export and QAT tests, which only read it. Ten epochs: after six, test accuracy
    still ranged from 71% to 97% with the seed or the memory format, and int8 agreement from 93% to 100%."""
    from slimbench.train import TrainConfig, train

    config = TrainConfig.model_validate({
        "model": {"model": "resnet20", "width": 0.5}, "epochs": 10, "batch_size": 64,
        "data": {"name": "synthetic", "val_size": 64}, "optimizer": {"lr": 0.05}, "schedule": {"name": "cosine"},
    })
    result = train(config, run_dir=tmp_path_factory.mktemp("trained") / "run", progress=False, dataset=synthetic)
    assert result.metrics["test_acc"] > 0.9
    return result.model_path
