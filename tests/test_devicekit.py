"""benchmarks/device/devicekit.py: the data that travels to a lent GPU in pieces comes back bit-exact, or stops."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest

from slimbench.data import load_dataset

KIT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "devicekit.py"


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("devicekit", KIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_cifar(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    arrays = {}
    for name in ("train_1", "train_2", "train_3", "train_4", "train_5", "test"):
        x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, 12).astype(np.uint8)
        np.savez_compressed(folder / f"{name}.npz", x=x, y=y, filenames=np.array([f"{name}_{i}.png" for i in range(12)]))
        arrays[name] = x
    return arrays


def test_packed_chunks_rebuild_the_dataset_bit_exact(tmp_path, kit):
    arrays = _small_cifar(tmp_path / "src")
    chunks = kit.pack_data(tmp_path / "src", tmp_path / "dev", chunks=3)
    assert [c.name for c in chunks] == ["d1", "d2", "d3"]
    assert sorted(p.name for p in chunks[2].iterdir()) == ["manifest.json", "test.x.xz", "test.y.xz",
                                                          "train_5.x.xz", "train_5.y.xz"]
    for chunk in chunks:  # one a call, as they arrive
        kit.unpack_data(chunk, tmp_path / "there")
    original = load_dataset("cifar10", tmp_path / "src")
    rebuilt = load_dataset("cifar10", tmp_path / "there")
    assert np.array_equal(rebuilt.train_x, original.train_x) and np.array_equal(rebuilt.test_y, original.test_y)
    assert np.array_equal(rebuilt.test_x.numpy().transpose(0, 2, 3, 1), arrays["test"])


def test_a_damaged_chunk_stops_before_writing(tmp_path, kit):
    _small_cifar(tmp_path / "src")
    [chunk] = kit.pack_data(tmp_path / "src", tmp_path / "dev", chunks=1)
    manifest = (chunk / "manifest.json").read_text()
    last = manifest.rindex('"x_sha256": "')  # the test split's images, after five good training files
    (chunk / "manifest.json").write_text(manifest[:last] + '"x_sha256": "0' + manifest[last + len('"x_sha256": "'):])
    with pytest.raises(SystemExit, match="does not match the digest"):
        kit.unpack_data(chunk, tmp_path / "there")
    assert not list((tmp_path / "there").glob("*.npz"))


def test_size_counts_the_tree_and_carried_paths(tmp_path, kit):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("/.dev/\n")
    (repo / "a.bin").write_bytes(b"x" * 1000)
    (repo / ".dev" / "d1").mkdir(parents=True)
    (repo / ".dev" / "d1" / "c.xz").write_bytes(b"y" * 5000)
    sizes = kit.travelling_bytes(repo, [".dev/d1"])
    assert sizes == {"working tree": 1000 + len("/.dev/\n"), ".dev/d1": 5000}  # the ignored chunk only when carried
    assert kit.main(["size", "--repo", str(repo), ".dev/d1"]) == 0
