"""CIFAR-10/100 as uint8 tensors: download, verify, cache, and read every common on-disk layout.

Layouts read from a folder (searched recursively one level down, so the archive's own sub-folder works):
- npz: ``train_1.npz`` .. ``train_5.npz`` + ``test.npz`` (keys ``x`` uint8 [N,32,32,3] RGB, ``y`` [N]),
  or ``train.npz`` + ``test.npz``;
- official binary batches: ``data_batch_{1..5}.bin`` + ``test_batch.bin`` (CIFAR-10),
  ``train.bin`` + ``test.bin`` (CIFAR-100, coarse+fine label bytes);
- official python batches: ``data_batch_{1..5}`` + ``test_batch`` / ``train`` + ``test``, read with an
  unpickler that only admits numpy arrays, so a crafted file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from slimbench.errors import DatasetError

DATA_ENV = "SLIMBENCH_DATA"
CACHE_ENV = "SLIMBENCH_CACHE"
URL_ENV = "SLIMBENCH_CIFAR_URL"

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSource:
    """Where a CIFAR variant comes from and how its binary records are laid out."""

    name: str
    url: str
    md5: str
    archive_dir: str
    train_bins: tuple[str, ...]
    test_bin: str
    train_pys: tuple[str, ...]
    test_py: str
    label_bytes: int
    num_classes: int
    classes: tuple[str, ...]


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        archive_dir="cifar-10-batches-bin",
        train_bins=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_bin="test_batch.bin",
        train_pys=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_py="test_batch",
        label_bytes=1,
        num_classes=10,
        classes=CIFAR10_CLASSES,
    ),
    "cifar100": CifarSource(
        name="cifar100",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        archive_dir="cifar-100-binary",
        train_bins=("train.bin",),
        test_bin="test.bin",
        train_pys=("train",),
        test_py="test",
        label_bytes=2,
        num_classes=100,
        classes=tuple(str(i) for i in range(100)),
    ),
}


@dataclass
class ImageDataset:
    """Train and test images as uint8 NCHW tensors with int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: tuple[str, ...]
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slimbench"


def load_cifar(
    name: str = "cifar10",
    data_dir: str | Path | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
    url: str | None = None,
    md5: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageDataset:
    """Load CIFAR-10/100 from ``data_dir``, ``$SLIMBENCH_DATA``, the cache, or the official archive.

    ``url``/``md5`` override the official archive (a mirror, or a local test server).
    """
    if name not in SOURCES:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if explicit is not None:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise DatasetError(f"data folder {folder} does not exist")
        found = _read_folder(folder, source)
        if found is None:
            raise DatasetError(
                f"no {name} files in {folder}: expected npz (train_1..5.npz + test.npz), "
                f"official binary ({', '.join(source.train_bins[:1])}...) or python batches"
            )
        return found
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache / name
    if target.is_dir():
        found = _read_folder(target, source)
        if found is not None:
            return found
    if not download:
        raise DatasetError(
            f"{name} not found: put the official binary archive's files in {target}, "
            f"or point --data-dir / ${DATA_ENV} at a folder holding them"
        )
    fetch_archive(source, target, url=url or os.environ.get(URL_ENV) or source.url,
                  md5=md5 or source.md5, progress=progress)
    found = _read_folder(target, source)
    if found is None:  # the archive verified but held none of the expected files
        raise DatasetError(f"archive from {url or source.url} holds no {name} batches")
    return found


def fetch_archive(
    source: CifarSource,
    target: Path,
    url: str,
    md5: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Download, md5-check and extract the binary archive into ``target`` atomically.

    Everything goes to a temporary sibling folder first; ``target`` appears only once complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=target.parent))
    try:
        archive = work / Path(url).name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                digest = hashlib.md5()
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (urllib.error.URLError, OSError) as exc:
            raise DatasetError(
                f"could not download {url} ({exc}); offline? put the archive's files in {target} "
                f"or point --data-dir / ${DATA_ENV} at them"
            ) from None
        if digest.hexdigest() != md5:
            raise DatasetError(
                f"{archive.name}: md5 {digest.hexdigest()} does not match the expected {md5} "
                "(corrupt or truncated download); nothing was cached"
            )
        extracted = work / "extracted"
        _safe_extract(archive, extracted, source)
        inner = extracted / source.archive_dir
        if not inner.is_dir():
            raise DatasetError(f"{archive.name} has no {source.archive_dir}/ folder")
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _safe_extract(archive: Path, dest: Path, source: CifarSource) -> None:
    wanted = {*source.train_bins, source.test_bin}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [
                m for m in tar.getmembers()
                if m.isfile() and Path(m.name).name in wanted and ".." not in Path(m.name).parts
                and not Path(m.name).is_absolute()
            ]
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{archive.name}: cannot extract ({exc})") from None


def _read_folder(folder: Path, source: CifarSource) -> ImageDataset | None:
    for candidate in (folder, folder / source.archive_dir, folder / source.archive_dir.replace("-bin", "-py")):
        for reader in (_read_npz, _read_bin, _read_python):
            found = reader(candidate, source)
            if found is not None:
                return found
    return None


def _dataset(source: CifarSource, parts: tuple, where: Path, kind: str) -> ImageDataset:
    train_x, train_y, test_x, test_y = parts
    for label, y in (("train", train_y), ("test", test_y)):
        if y.size and (y.min() < 0 or y.max() >= source.num_classes):
            raise DatasetError(f"{where}: {label} labels outside 0..{source.num_classes - 1}")
    return ImageDataset(
        name=source.name,
        train_x=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_y=torch.from_numpy(train_y.astype(np.int64)),
        test_x=torch.from_numpy(np.ascontiguousarray(test_x)),
        test_y=torch.from_numpy(test_y.astype(np.int64)),
        num_classes=source.num_classes,
        classes=source.classes,
        source=f"{kind}:{where}",
    )


def _read_npz(folder: Path, source: CifarSource) -> ImageDataset | None:
    test = folder / "test.npz"
    shards = sorted(folder.glob("train_*.npz"), key=lambda p: int(p.stem[6:]) if p.stem[6:].isdigit() else 0)
    if not shards and (folder / "train.npz").exists():
        shards = [folder / "train.npz"]
    if not test.exists() or not shards:
        return None
    xs, ys = [], []
    for path in shards:
        x, y = _npz_arrays(path)
        xs.append(x)
        ys.append(y)
    test_x, test_y = _npz_arrays(test)
    to_nchw = lambda a: a.transpose(0, 3, 1, 2)  # noqa: E731 - stored HWC, used CHW
    return _dataset(source, (to_nchw(np.concatenate(xs)), np.concatenate(ys), to_nchw(test_x), test_y), folder, "npz")


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files or "y" not in archive.files:
                raise DatasetError(f"{path}: expected keys 'x' and 'y', found {archive.files}")
            x, y = archive["x"], archive["y"]
    except DatasetError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated npz ({exc})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DatasetError(f"{path}: 'x' must be uint8 [N,32,32,3], got {x.dtype} {list(x.shape)}")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"{path}: 'y' must be [N] with N={len(x)}, got {list(y.shape)}")
    return x, y


def _read_bin(folder: Path, source: CifarSource) -> ImageDataset | None:
    paths = [folder / f for f in source.train_bins]
    test = folder / source.test_bin
    if not test.exists() or not all(p.exists() for p in paths):
        return None
    parts = [_bin_records(p, source) for p in paths]
    test_x, test_y = _bin_records(test, source)
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return _dataset(source, (train_x, train_y, test_x, test_y), folder, "bin")


def _bin_records(path: Path, source: CifarSource) -> tuple[np.ndarray, np.ndarray]:
    record = source.label_bytes + IMAGE_BYTES
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DatasetError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte records (truncated or corrupt)"
        )
    rows = raw.reshape(-1, record)
    labels = rows[:, source.label_bytes - 1]  # CIFAR-100 stores coarse then fine: keep the fine label
    return rows[:, source.label_bytes:].reshape(-1, 3, 32, 32), labels


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what a numpy array needs; any other global (os.system, ...) is refused."""

    allowed: ClassVar[set[tuple[str, str]]] = {
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2; pure data
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _read_python(folder: Path, source: CifarSource) -> ImageDataset | None:
    paths = [folder / f for f in source.train_pys]
    test = folder / source.test_py
    if not test.exists() or not all(p.exists() for p in paths):
        return None
    parts = [_python_batch(p) for p in paths]
    test_x, test_y = _python_batch(test)
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return _dataset(source, (train_x, train_y, test_x, test_y), folder, "python")


def _python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{path}: not a plain CIFAR python batch ({exc}); refusing to load it") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict batch, got {type(batch).__name__}")
    data = batch.get(b"data")
    labels = batch.get(b"labels", batch.get(b"fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DatasetError(f"{path}: batch lacks 'data' and 'labels'")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise DatasetError(f"{path}: 'data' must be [N,3072], got {list(data.shape)}")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(data):
        raise DatasetError(f"{path}: {len(y)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), y


def write_binary_batches(dataset: ImageDataset, folder: Path) -> None:
    """Write a dataset in the official CIFAR-10 binary layout (used to build test archives)."""
    source = SOURCES[dataset.name]
    folder.mkdir(parents=True, exist_ok=True)

    def records(x: torch.Tensor, y: torch.Tensor) -> bytes:
        labels = y.numpy().astype(np.uint8)[:, None]
        if source.label_bytes == 2:
            labels = np.concatenate([np.zeros_like(labels), labels], axis=1)
        return np.concatenate([labels, x.numpy().reshape(len(x), -1)], axis=1).tobytes()

    chunks = np.array_split(np.arange(len(dataset.train_x)), len(source.train_bins))
    for name, idx in zip(source.train_bins, chunks, strict=True):
        (folder / name).write_bytes(records(dataset.train_x[idx], dataset.train_y[idx]))
    (folder / source.test_bin).write_bytes(records(dataset.test_x, dataset.test_y))
