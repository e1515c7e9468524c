from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from slimbench.data import load_cifar, load_dataset, make_synthetic, stratified_split
from slimbench.data.cifar import write_binary_batches
from slimbench.errors import DatasetError


def write_npz_folder(dataset, folder: Path, shards: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    hwc = dataset.train_x.permute(0, 2, 3, 1).numpy()
    for i, idx in enumerate(np.array_split(np.arange(len(hwc)), shards), start=1):
        np.savez_compressed(folder / f"train_{i}.npz", x=hwc[idx], y=dataset.train_y.numpy()[idx].astype(np.uint8))
    np.savez_compressed(folder / "test.npz", x=dataset.test_x.permute(0, 2, 3, 1).numpy(),
                        y=dataset.test_y.numpy().astype(np.uint8))


def as_cifar10(dataset):
    dataset.name = "cifar10"
    return dataset


def assert_same(a, b) -> None:
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.test_y, b.test_y)


def test_npz_folder_loads_as_nchw_uint8(tmp_path, synthetic):
    write_npz_folder(synthetic, tmp_path / "npz")
    loaded = load_cifar("cifar10", tmp_path / "npz")
    assert loaded.train_x.dtype == torch.uint8 and loaded.train_x.shape == (512, 3, 32, 32)
    assert loaded.train_y.dtype == torch.int64
    assert_same(loaded, synthetic)
    assert loaded.source.startswith("npz:")


def test_data_env_variable_points_at_folder(tmp_path, synthetic, monkeypatch):
    write_npz_folder(synthetic, tmp_path / "npz")
    monkeypatch.setenv("SLIMBENCH_DATA", str(tmp_path / "npz"))
    assert_same(load_dataset("cifar10"), synthetic)


def test_binary_batches_round_trip(tmp_path):
    data = as_cifar10(make_synthetic(num_train=100, num_test=20))
    write_binary_batches(data, tmp_path / "cifar-10-batches-bin")
    loaded = load_cifar("cifar10", tmp_path)  # finds the archive's sub-folder
    assert_same(loaded, data)
    assert loaded.source.startswith("bin:")


def python_batch(x: torch.Tensor, y: torch.Tensor) -> bytes:
    return pickle.dumps({b"data": x.reshape(len(x), -1).numpy(), b"labels": y.tolist()}, protocol=2)


def test_python_batches_read_without_arbitrary_unpickling(tmp_path):
    data = make_synthetic(num_train=100, num_test=20)
    chunks = np.array_split(np.arange(100), 5)
    for i, idx in enumerate(chunks, start=1):
        (tmp_path / f"data_batch_{i}").write_bytes(python_batch(data.train_x[idx], data.train_y[idx]))
    (tmp_path / "test_batch").write_bytes(python_batch(data.test_x, data.test_y))
    assert_same(load_cifar("cifar10", tmp_path), data)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_python_batch_with_code_is_refused_and_not_run(tmp_path):
    data = make_synthetic(num_train=100, num_test=20)
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}").write_bytes(python_batch(data.train_x[:20], data.train_y[:20]))
    marker = tmp_path / "pwned"
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=r"test_batch.*refusing"):
        load_cifar("cifar10", tmp_path)
    assert not marker.exists()


def test_corrupt_npz_names_the_file(tmp_path, synthetic):
    write_npz_folder(synthetic, tmp_path)
    blob = (tmp_path / "train_3.npz").read_bytes()
    (tmp_path / "train_3.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"train_3\.npz"):
        load_cifar("cifar10", tmp_path)


def test_npz_with_wrong_layout_is_explained(tmp_path, synthetic):
    write_npz_folder(synthetic, tmp_path)
    np.savez(tmp_path / "test.npz", x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match=r"test\.npz.*\[N,32,32,3\]"):
        load_cifar("cifar10", tmp_path)


def test_truncated_binary_batch_is_reported(tmp_path):
    data = as_cifar10(make_synthetic(num_train=100, num_test=20))
    write_binary_batches(data, tmp_path)
    blob = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "test_batch.bin").write_bytes(blob[:-100])
    with pytest.raises(DatasetError, match=r"test_batch\.bin.*truncated"):
        load_cifar("cifar10", tmp_path)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_cifar("cifar10", tmp_path / "nope")
    with pytest.raises(DatasetError, match="no cifar10 files"):
        load_cifar("cifar10", tmp_path)


def test_offline_without_data_says_where_to_put_files(tmp_path):
    with pytest.raises(DatasetError, match="put the official binary archive"):
        load_cifar("cifar10", cache_dir=tmp_path / "cache", download=False)


def official_archive(tmp_path: Path) -> bytes:
    data = as_cifar10(make_synthetic(num_train=50, num_test=10, seed=3))
    folder = tmp_path / "src" / "cifar-10-batches-bin"
    write_binary_batches(data, folder)
    (folder / "batches.meta.txt").write_text("airplane\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    return buffer.getvalue()


@pytest.fixture
def archive_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving one archive; counts the requests it answers."""
    payload = {"body": official_archive(tmp_path), "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            payload["hits"] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload["body"])))
            self.end_headers()
            self.wfile.write(payload["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-binary.tar.gz", payload
    server.shutdown()


def test_download_verifies_extracts_and_caches(tmp_path, archive_server):
    url, payload = archive_server
    md5 = hashlib.md5(payload["body"]).hexdigest()
    cache = tmp_path / "cache"
    first = load_cifar("cifar10", cache_dir=cache, url=url, md5=md5)
    assert first.train_x.shape == (50, 3, 32, 32) and payload["hits"] == 1
    second = load_cifar("cifar10", cache_dir=cache, url=url, md5=md5)
    assert_same(first, second)
    assert payload["hits"] == 1  # served from the cache
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == sorted(
        [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    )


def test_bad_checksum_leaves_nothing_in_cache(tmp_path, archive_server):
    url, _ = archive_server
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=r"cifar-10-binary\.tar\.gz: md5 .* does not match"):
        load_cifar("cifar10", cache_dir=cache, url=url, md5="0" * 32)
    assert list(cache.iterdir()) == []


def test_unreachable_server_gives_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"could not download .* offline"):
        load_cifar("cifar10", cache_dir=tmp_path / "c", url="http://127.0.0.1:9/cifar-10-binary.tar.gz")


def test_stratified_split_is_disjoint_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    a = stratified_split(labels, 100, seed=1)
    b = stratified_split(labels, 100, seed=1)
    c = stratified_split(labels, 100, seed=2)
    assert torch.equal(a.val_idx, b.val_idx) and not torch.equal(a.val_idx, c.val_idx)
    assert len(a.val_idx) == 100 and len(a.train_idx) == 900
    assert set(a.val_idx.tolist()).isdisjoint(a.train_idx.tolist())
    assert torch.bincount(labels[a.val_idx]).tolist() == [10] * 10


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


@pytest.mark.realdata
def test_real_cifar10_matches_published_checksums(real_data_dir):
    data = load_cifar("cifar10", real_data_dir)
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    hwc = data.train_x.permute(0, 2, 3, 1).contiguous().numpy()
    assert hashlib.sha256(hwc.tobytes()).hexdigest() == (
        "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a"
    )
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


def test_cifar100_binary_layout_keeps_the_fine_label(tmp_path):
    data = make_synthetic(num_train=60, num_test=20, num_classes=100)
    data.name = "cifar100"
    write_binary_batches(data, tmp_path / "cifar-100-binary")
    loaded = load_cifar("cifar100", tmp_path)
    assert loaded.num_classes == 100
    assert_same(loaded, data)
