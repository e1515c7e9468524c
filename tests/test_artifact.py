from __future__ import annotations

import pickle

import pytest
import torch

from slimbench.artifact import Artifact, load_artifact, load_model, save_artifact
from slimbench.errors import CheckpointError
from slimbench.models import build_model

SPEC = {"model": "resnet20", "width": 0.25}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    path = tmp_path / "model.pt"
    save_artifact(Artifact.from_model(SPEC, model, metrics={"note": "x"}), path)
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded, artifact = load_model(path)
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert artifact.spec == {"model": "resnet20", "shortcut": "B", "width": 0.25, "num_classes": 10}
    assert artifact.metrics == {"note": "x"}


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_pickled_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"format": "slimbench.artifact", "state": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused without running them"):
        load_artifact(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_artifact(raw)
    assert not marker.exists()


def test_tampered_weights_are_detected(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state"]["fc.bias"] += 1.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match their recorded hash"):
        load_artifact(tmp_path / "tampered.pt")


def test_truncated_and_foreign_files(saved, tmp_path):
    _, path = saved
    blob = path.read_bytes()
    (tmp_path / "half.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_artifact(tmp_path / "half.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a slimbench artifact"):
        load_artifact(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_artifact(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_spec(tmp_path):
    state = build_model({"model": "resnet20", "width": 0.5}).state_dict()
    artifact = Artifact(spec={"model": "resnet20", "shortcut": "B", "width": 0.25, "num_classes": 10}, state=state)
    save_artifact(artifact, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="weights do not fit resnet20"):
        load_model(tmp_path / "wrong.pt")


def test_atomic_save_keeps_the_old_file_when_writing_fails(saved, monkeypatch):
    _, path = saved
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_artifact(Artifact(spec=SPEC | {"shortcut": "B", "num_classes": 10}, state={}), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    """mkstemp makes 0600 files: a report or model written through it must not become private to its writer."""
    import os
    import stat

    from slimbench.artifact import core as artifact

    mask = os.umask(0o022)
    try:
        assert artifact._new_file_mode() == 0o644
    finally:
        os.umask(mask)
    artifact.atomic_write(tmp_path / "new.html", b"<html>")
    assert stat.S_IMODE((tmp_path / "new.html").stat().st_mode) == 0o666 & ~mask  # as open() would make it
    (tmp_path / "new.html").chmod(0o640)
    artifact.atomic_write(tmp_path / "new.html", b"<html>again")  # a replaced file keeps its mode
    assert stat.S_IMODE((tmp_path / "new.html").stat().st_mode) == 0o640


def test_pruning_masks_are_stored_hashed_and_checked(tmp_path):
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    mask = torch.rand_like(model.fc.weight) > 0.5
    path = tmp_path / "masked.pt"
    save_artifact(Artifact.from_model(SPEC, model, masks={"fc.weight": mask}), path)
    assert torch.equal(load_artifact(path).masks["fc.weight"], mask)
    payload = torch.load(path, weights_only=True)
    payload["masks"]["fc.weight"][0, 0] = ~payload["masks"]["fc.weight"][0, 0]  # one weight unmasked by hand
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match their recorded hash"):
        load_artifact(tmp_path / "tampered.pt")
    payload = torch.load(path, weights_only=True)
    payload["masks"] = {"fc.weight": mask.float()}
    torch.save(payload, tmp_path / "float_mask.pt")
    with pytest.raises(CheckpointError, match=r"fc\.weight is not a boolean tensor"):
        load_artifact(tmp_path / "float_mask.pt")
    payload["masks"] = {"conv1.weight": mask}
    torch.save(payload, tmp_path / "misfit.pt")
    with pytest.raises(CheckpointError, match=r"conv1\.weight fits no weight"):
        load_artifact(tmp_path / "misfit.pt")
    # an artifact written before masks were recorded has none, and its hash is what it was
    save_artifact(Artifact.from_model(SPEC, model), tmp_path / "plain.pt")
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    del plain["masks"]
    torch.save(plain, tmp_path / "older.pt")
    assert load_artifact(tmp_path / "older.pt").masks is None
