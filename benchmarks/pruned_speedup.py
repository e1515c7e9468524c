"""Is a pruned ResNet-20 really faster on this machine? ONNX Runtime, fp32 and int8, batch 64 (and 1).

Prunes the committed ResNet-20 by 30% of its parameters (one global L1 ranking, as section 5) once per
channel multiple asked for (``round_to``: 8, 16, auto...), quantizes each structure and the unpruned model to
int8 (ONNX Runtime static QDQ, calibrated on 512 training images), and times every file in alternating
rounds, so a busy moment of the machine hits all of them. Latency does not depend on the weights' values,
so the structures are timed before fine-tuning. Prints the machine class (slimbench.hardware) with the table.

Usage: SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/pruned_speedup.py [--round-to 8,auto]
       [--ratio 0.3] [--rounds 5] [--repeats 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

from slimbench.artifact import load_artifact, load_model
from slimbench.compress import PruneConfig
from slimbench.compress.calibration import calibration_indices, dataset_for
from slimbench.compress.prune import prune_model
from slimbench.compress.quantize import QuantizeConfig, quantize_int8_onnx
from slimbench.hardware import host
from slimbench.measure import count_model
from slimbench.measure.latency import measure_onnx_latency
from slimbench.runtimes.onnx import export_onnx

PARENT = Path(__file__).resolve().parent / "results/resnet20-cifar10/model.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=PARENT)
    parser.add_argument("--round-to", default="8,auto")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--batch-sizes", default="64,1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    parent_artifact = load_artifact(args.checkpoint)
    parent, _ = load_model(args.checkpoint)
    data = dataset_for(parent_artifact, None)
    calibration = data.train_x[calibration_indices(data, parent_artifact, 512, 0)]
    models = {"unpruned": parent.eval()}
    for choice in args.round_to.split(","):
        round_to = int(choice) if choice.isdigit() else choice
        config = PruneConfig(ratio=args.ratio, scope="global", round_to=round_to)
        pruned, record = prune_model(parent, parent_artifact.spec, config)
        models[f"pruned{int(args.ratio * 100)} round_to {choice} (= {record['round_to']})"] = pruned.eval()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for i, (label, model) in enumerate(models.items()):
            float_path = export_onnx(model, Path(tmp) / f"m{i}.onnx")
            int8_path = quantize_int8_onnx(float_path, Path(tmp) / f"m{i}.int8.onnx", calibration, QuantizeConfig())
            counts = count_model(model)
            files[(label, "fp32")] = (float_path, counts)
            files[(label, "int8")] = (int8_path, counts)
        best: dict[tuple[str, str, int], float] = {}
        for _ in range(args.rounds):
            for batch in sizes:
                for key, (path, _) in files.items():
                    ms = measure_onnx_latency(path, batch, repeats=args.repeats).median_ms
                    best[(*key, batch)] = min(best.get((*key, batch), float("inf")), ms)
        for (label, precision, batch), ms in best.items():
            counts = files[(label, precision)][1]
            reference = best[("unpruned", precision, batch)]
            rows.append({"model": label, "precision": precision, "batch_size": batch, "best_median_ms": ms,
                         "speedup": reference / ms, "params": counts.params, "macs": counts.macs})
    print(f"{host().describe()}; {host().cpu_name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{datetime.now(UTC):%Y-%m-%d}; ONNX Runtime, best of {args.rounds} rounds of {args.repeats}-call medians")
    print(f"{'model':<34}{'prec':>6}{'batch':>7}{'ms':>9}{'vs unpruned':>13}{'params':>10}{'MACs':>13}")
    for r in sorted(rows, key=lambda r: (r["batch_size"], r["precision"], r["model"])):
        print(f"{r['model']:<34}{r['precision']:>6}{r['batch_size']:>7}{r['best_median_ms']:>9.3f}"
              f"{r['speedup']:>12.2f}x{r['params']:>10,}{r['macs']:>13,}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"host": host().describe(), "cpu": host().cpu_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
