"""The model artifact every stage reads and writes: spec, state, structure, quant, lineage, metrics.

One file, written by ``torch.save`` from plain data and tensors only, so it loads with
``torch.load(weights_only=True)``: a file carrying any other pickled object is refused unread.
``state_sha256`` covers the spec and every tensor, so edited or corrupted weights are caught on load.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import stat
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimbench import __version__
from slimbench.errors import CheckpointError, ModelError
from slimbench.models import build_model, normalize_spec
from slimbench.models.structure import apply_structure

FORMAT = "slimbench.artifact"
FORMAT_VERSION = 1


@dataclass
class Artifact:
    """A model as data. ``structure`` and ``quant`` stay ``None`` until a stage changes them."""

    spec: dict[str, Any]
    state: dict[str, torch.Tensor]
    structure: dict[str, Any] | None = None
    quant: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    # keep-masks (True: kept) of the tensors that pruning sparsified: what a trainer holds at zero and what the
    # score counts as pruned; zeros a low-bit grid makes are weights, not pruning, and are not in them
    masks: dict[str, torch.Tensor] | None = None

    @property
    def digest(self) -> str:
        return state_digest(self.spec, self.state, self.structure, self.quant, self.masks)

    @classmethod
    def from_model(cls, spec: dict[str, Any], model: nn.Module, **kwargs: Any) -> Artifact:
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return cls(spec=normalize_spec(spec), state=state, **kwargs)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "spec": self.spec,
            "state": self.state,
            "structure": self.structure,
            "quant": self.quant,
            "lineage": self.lineage,
            "metrics": self.metrics,
            "masks": self.masks,
            "state_sha256": self.digest,
        }


def state_digest(
    spec: dict[str, Any], state: dict[str, torch.Tensor], structure: dict[str, Any] | None = None,
    quant: dict[str, Any] | None = None, masks: dict[str, torch.Tensor] | None = None,
) -> str:
    """SHA-256 over everything that defines the model's function; structure/quant/masks only when present."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    if structure:
        h.update(b"structure:" + json.dumps(structure, sort_keys=True).encode())
    if quant:
        h.update(b"quant:" + json.dumps(quant, sort_keys=True).encode())
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{tensor.dtype}:{list(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    for key in sorted(masks or {}):
        mask = masks[key].detach().cpu().contiguous().to(torch.uint8)
        h.update(f"mask:{key}:{list(mask.shape)}".encode() + mask.reshape(-1).numpy().tobytes())
    return h.hexdigest()


def _new_file_mode() -> int:
    """What ``open()`` would give a new file under this process's umask (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _new_file_mode()  # read once, at import: setting the umask to read it is not thread-safe


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: readers never see half a file.

    The file gets the permissions a plain write would: those of the file it replaces, else the umask's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temporary file (one a library wrote through its own path, e.g. from mkstemp, which makes
    it private) into place atomically, with the permissions a plain write would give it."""
    if hasattr(os, "chmod"):
        os.chmod(tmp, _NEW_FILE_MODE)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain data, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line), "")
        reason = reason.replace("WeightsUnpickler error: ", "").split(" was not")[0]
        raise CheckpointError(
            f"{path}: holds objects other than tensors and plain data; refused without running them"
            + (f" ({reason[:120]})" if reason else "")
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated: {first[:160]})") from None


def save_artifact(artifact: Artifact, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the artifact atomically; ``extra`` holds tensors/plain data such as a resume state."""
    payload = artifact.to_payload()
    if extra:
        payload.update(extra)
    atomic_torch_save(payload, path)


def artifact_from_payload(payload: Any, path: str | Path) -> Artifact:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a slimbench artifact (no '{FORMAT}' header)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: artifact format version {version}, this slimbench reads version {FORMAT_VERSION}"
        )
    artifact = Artifact(
        spec=payload["spec"], state=payload["state"], structure=payload.get("structure"),
        quant=payload.get("quant"), lineage=payload.get("lineage") or [], metrics=payload.get("metrics") or {},
        masks=payload.get("masks"),
    )
    _check_masks(artifact.masks, artifact.state, path)
    if artifact.digest != payload.get("state_sha256"):
        raise CheckpointError(f"{path}: weights do not match their recorded hash (modified or corrupt)")
    return artifact


def _check_masks(masks: Any, state: dict[str, torch.Tensor], path: str | Path) -> None:
    if masks is None:
        return
    if not isinstance(masks, dict):
        raise CheckpointError(f"{path}: its pruning masks are not a table of tensors (corrupt)")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise CheckpointError(f"{path}: pruning mask {name} is not a boolean tensor (corrupt)")
        if name not in state or state[name].shape != mask.shape:
            raise CheckpointError(f"{path}: pruning mask {name} fits no weight of the model (corrupt)")


def load_artifact(path: str | Path) -> Artifact:
    return artifact_from_payload(safe_torch_load(path), path)


def build_from_artifact(artifact: Artifact, path: str | Path = "artifact") -> nn.Module:
    """Rebuild the model: architecture from ``spec``, layers resized to ``structure`` and made low-bit as
    ``quant`` says, weights (and learned step sizes) from ``state``."""
    try:
        model = build_model(artifact.spec)
    except ModelError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if artifact.structure:
        apply_structure(model, artifact.structure, str(path))
    if (artifact.quant or {}).get("mode") == "qat":  # low-bit layers (Brevitas) rebuilt from the recipe
        from slimbench.models.lowbit import apply_lowbit

        apply_lowbit(model, artifact.quant.get("layers") or {}, str(path))
    try:
        result = model.load_state_dict(artifact.state, strict=False)
    except RuntimeError as exc:  # a tensor whose shape does not fit the layer
        detail = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path}: weights do not fit {artifact.spec['model']}: {detail}") from None
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:3])
        unexpected = ", ".join(result.unexpected_keys[:3])
        raise CheckpointError(
            f"{path}: weights do not fit {artifact.spec['model']} (missing: {missing or '-'}; unexpected: "
            f"{unexpected or '-'})"
        )
    dtype = (artifact.quant or {}).get("dtype")
    if dtype in ("float16", "bfloat16"):
        model = model.to(getattr(torch, dtype))
    return model


def load_model(path: str | Path) -> tuple[nn.Module, Artifact]:
    """Load an artifact file and rebuild its model, in eval mode."""
    artifact = load_artifact(path)
    return build_from_artifact(artifact, path).eval(), artifact


@functools.cache
def code_version() -> dict[str, Any]:
    """slimbench version and, when run from a git checkout, its commit."""
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    return {"slimbench": __version__, "git_commit": commit, "torch": str(torch.__version__)}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
