"""Time to 90%: the brief's ResNet-20 recipe against slimbench's fast recipe, one run, one machine.

Trains each recipe with the real trainer on the real CIFAR-10 (45,000 training images, the 5,000 validation
images choose the epoch, the 10,000 test images are evaluated after every epoch for this report only), and
prints the first epoch at which each reaches 90% test accuracy, the training time up to it (training steps
only) and the wall-clock time (with the per-epoch evaluations), then the final figures. Each run trains in
its own directory under ``--out`` and resumes from its last saved epoch when the script is started again.

- ``brief``: the ResNet-20 stage of studies/brief.yaml (SGD lr 0.1, wd 1e-5, multistep [40, 60], 80 epochs);
- ``fast``: configs/resnet20_fast.yaml (ResNet-20);
- ``airnet``: configs/airnet_fast.yaml (a shallower zoo model within ResNet-20's parameters and MACs).

Usage: SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/time_to_accuracy.py [--recipes brief,fast,airnet]
       [--out runs/time-to-accuracy] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from slimbench.config import load_config, read_yaml
from slimbench.hardware import host
from slimbench.train import TrainConfig, resume_training, train

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.90


CONFIGS = {"fast": "configs/resnet20_fast.yaml", "airnet": "configs/airnet_fast.yaml"}


def recipe(name: str) -> TrainConfig:
    if name in CONFIGS:
        return load_config(TrainConfig, ROOT / CONFIGS[name], {"report_test_each_epoch": True})
    if name == "brief":
        study = read_yaml(ROOT / "studies/brief.yaml")
        stage = next(e for e in study["experiments"] if e["name"] == "resnet20")["stages"][0]["train"]
        return TrainConfig.model_validate({**stage, "name": "resnet20-brief-recipe", "data": study["data"],
                                           "report_test_each_epoch": True})
    raise SystemExit(f"unknown recipe {name!r}: use brief, {', '.join(CONFIGS)}")


def run(name: str, out: Path) -> list[dict[str, Any]]:
    run_dir = out / name
    if (run_dir / "model.pt").exists():
        return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    if (run_dir / "last.pt").exists():
        return resume_training(run_dir).history
    return train(recipe(name), run_dir=run_dir).history


def summary(name: str, history: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    wall = 0.0
    reached = None
    for record in history:
        wall += record["epoch_s"] + record.get("eval_s", 0.0)
        if reached is None and record.get("test_acc", 0.0) >= TARGET:
            reached = {"epoch": record["epoch"], "train_s": record["elapsed_s"], "wall_s": wall}
    return {"recipe": name, "epochs": len(history), "reached_90": reached,
            "best_test_any_epoch": max(r.get("test_acc", 0.0) for r in history),
            "selected_epoch": metrics.get("selected_epoch"), "val_acc": metrics.get("val_acc"),
            "test_acc": metrics.get("test_acc"), "train_s": metrics.get("train_seconds"), "wall_s": wall,
            "precision": metrics.get("precision"), "device": metrics.get("device")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="brief,fast,airnet")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/time-to-accuracy")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for name in args.recipes.split(","):
        history = run(name, args.out)
        metrics = json.loads((args.out / name / "metrics.json").read_text())
        rows.append(summary(name, history, metrics))
    machine = (f"{host().describe()}; {host().cpu_name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
               f"{datetime.now(UTC):%Y-%m-%d}")
    print(machine)
    print(f"{'recipe':<8}{'epochs':>7}{'90% at epoch':>14}{'train min':>11}{'wall min':>10}"
          f"{'sel. epoch':>11}{'val':>8}{'test':>8}{'total min':>11}")
    for r in rows:
        hit = r["reached_90"]
        epoch, train_min, wall_min = ((str(hit["epoch"]), f"{hit['train_s'] / 60:.1f}", f"{hit['wall_s'] / 60:.1f}")
                                      if hit else ("never", "-", "-"))
        print(f"{r['recipe']:<8}{r['epochs']:>7}{epoch:>14}{train_min:>11}{wall_min:>10}{r['selected_epoch']:>11}"
              f"{100 * r['val_acc']:>7.2f}%{100 * r['test_acc']:>7.2f}%{r['wall_s'] / 60:>11.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "target": TARGET, "recipes": rows}, indent=2))


if __name__ == "__main__":
    main()
