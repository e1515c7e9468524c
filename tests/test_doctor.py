from __future__ import annotations

import subprocess
import sys

import torch

from slimbench.artifact import Artifact, save_artifact
from slimbench.measure import diagnose, diagnose_target
from slimbench.models import build_model


def checks(findings) -> dict[str, str]:
    return {f.check: f.severity for f in findings}


def test_the_briefs_densenet_is_diagnosed():
    _, findings = diagnose_target("densenet121:stem=imagenet,num_classes=1000")
    found = checks(findings)
    assert found["stem"] == "error" and found["classifier"] == "error" and found["size"] == "warn"
    assert all(f.fix for f in findings)


def test_cifar_models_are_clean_and_depthwise_is_noted():
    assert diagnose(build_model({"model": "resnet20"})) == []
    assert checks(diagnose(build_model({"model": "mobilenetv2"}))) == {"depthwise": "info"}
    assert "shortcut" in checks(diagnose(build_model({"model": "resnet20", "shortcut": "A"})))


def test_batchnorm_never_updated_in_a_trained_checkpoint(tmp_path):
    spec = {"model": "resnet20", "width": 0.5}
    path = tmp_path / "m.pt"
    save_artifact(Artifact.from_model(spec, build_model(spec), lineage=[{"stage": "train"}]), path)
    _, findings = diagnose_target(path)
    assert checks(findings) == {"batchnorm": "error"}
    model = build_model(spec)
    model.train()(torch.randn(8, 3, 32, 32))  # one training-mode forward moves the statistics
    save_artifact(Artifact.from_model(spec, model, lineage=[{"stage": "train"}]), path)
    assert diagnose_target(path)[1] == []


def test_doctor_cli_exits_nonzero_on_errors():
    bad = subprocess.run([sys.executable, "-m", "slimbench.cli", "doctor", "resnet34:stem=imagenet"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "fix: use a CIFAR stem" in bad.stdout
    good = subprocess.run([sys.executable, "-m", "slimbench.cli", "doctor", "resnet20"],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "no findings" in good.stdout
