"""LiteRT beside ONNX Runtime on the same model, same run, same machine: file size, full-test-set accuracy of each
file as its engine runs it, and batch-1 latency (one latency code: slimbench.measure.latency).

For a model artifact it writes (or reuses) four files: ONNX fp32 and int8 (QDQ, ONNX Runtime static quantization)
and LiteRT fp32 and full-integer int8, all calibrated on training images. Latency rounds alternate the engines,
so that a noisy neighbour slows all of them alike.

Usage: SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/litert.py MODEL.pt --out DIR [--repeats 300]
       [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch

from slimbench.artifact import read_sidecar
from slimbench.data import load_dataset
from slimbench.export import export
from slimbench.hardware import host
from slimbench.measure.engines import engine_logits
from slimbench.measure.latency import measure_litert_latency, measure_onnx_latency


def _files(model: Path, out: Path) -> dict[str, Path]:
    wanted = {"onnxruntime fp32": ("onnx", "fp32", out / "onnx" / "model.onnx"),
              "onnxruntime int8": ("onnx", "int8", out / "onnx-int8" / "model.int8.onnx"),
              "litert fp32": ("tflite", "fp32", out / "tflite" / "model.tflite"),
              "litert int8": ("tflite", "int8", out / "tflite-int8" / "model.int8.tflite")}
    files = {}
    for label, (fmt, precision, path) in wanted.items():
        if not path.is_file():
            path = export(model, path.parent, precision=precision, format=fmt, latency=False,
                          commands=[f"slimbench export {model} --format {fmt} --precision {precision}"]).path
        files[label] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = _files(args.model, args.out)
    data = load_dataset("cifar10")
    rows = {}
    for label, path in files.items():
        engine = label.split()[0]
        logits = engine_logits(engine, path, data.test_x, batch_size=500)
        sidecar = read_sidecar(path)
        rows[label] = {"file": str(path), "file_bytes": path.stat().st_size,
                       "test_correct": int((logits.argmax(1) == data.test_y).sum()), "images": len(data.test_y),
                       "recorded_test_acc": sidecar["metrics"].get("test_acc"), "latency_ms": []}
    for _ in range(args.rounds):
        for label, path in files.items():
            time = measure_litert_latency if label.startswith("litert") else measure_onnx_latency
            rows[label]["latency_ms"].append(time(path, 1, repeats=args.repeats).median_ms)
    machine = f"{host().describe()}; {host().cpu_name}; {torch.get_num_threads()} threads; {datetime.now(UTC):%Y-%m-%d}"
    print(machine)
    print(f"{'file':<18}{'bytes':>10}{'test acc':>10}{'correct':>9}{'b1 ms (median of rounds)':>27}  rounds")
    for label, row in rows.items():
        row["median_ms"] = statistics.median(row["latency_ms"])
        print(f"{label:<18}{row['file_bytes']:>10,}{100 * row['test_correct'] / row['images']:>9.2f}%"
              f"{row['test_correct']:>9,}{row['median_ms']:>27.3f}  {', '.join(f'{t:.3f}' for t in row['latency_ms'])}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "litert.json").write_text(json.dumps({"machine": machine, "model": str(args.model),
                                                      "repeats": args.repeats, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
