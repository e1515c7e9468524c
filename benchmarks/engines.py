"""Which engine to ship: every installed engine at its stated precision, on slimbench's ONNX exports, in one run.

For each export: latency at batch 1 and 64 (one latency code: slimbench.measure), full-test-set accuracy per
engine, parity with ONNX Runtime running the file as exported, and the fastest faithful engine. Prints the
machine class (slimbench.hardware) with the table.

Usage: SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/engines.py LABEL=PATH.onnx ... [--repeats 200]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import torch

from slimbench.hardware import host
from slimbench.measure import measure
from slimbench.measure.latency import ENGINES
from slimbench.runtimes.openvino import openvino_available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="LABEL=PATH to a slimbench .onnx export (with its sidecar)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engines = tuple(e for e in ENGINES if e not in ("pytorch-eager", "pytorch-compile")
                    and (openvino_available() or "openvino" not in e))
    rows = []
    for item in args.models:
        label, _, path = item.partition("=")
        report = measure(path, latency=True, batch_sizes=(1, 64), repeats=args.repeats, engines=engines,
                         engine_accuracy=True)
        timing = {(t["engine"], t["batch_size"]): t["median_ms"] for t in report["latency"]}
        best = report.get("fastest_faithful") or {}
        for row in report["engines"]:
            rows.append({"model": label, "path": path, **row, "b1_ms": timing.get((row["engine"], 1)),
                         "b64_ms": timing.get((row["engine"], 64)), "fastest_faithful": row["engine"] == best.get("engine")})
    print(f"{host().describe()}; {host().cpu_name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{datetime.now(UTC):%Y-%m-%d}; median of {args.repeats} after 10 warm-ups")
    print(f"{'model':<14}{'engine':<15}{'precision':<13}{'b1 ms':>8}{'b64 ms':>9}{'test acc':>10}{'correct':>9}  faithful")
    for r in rows:
        mark = " (fastest faithful)" if r["fastest_faithful"] else ""
        print(f"{r['model']:<14}{r['engine']:<15}{r['precision']:<13}{r['b1_ms']:>8.3f}{r['b64_ms']:>9.2f}"
              f"{100 * r['test_acc']:>9.2f}%{r['correct']:>9,}  {'yes' if r['faithful'] else 'no: ' + r['note']}{mark}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"host": host().describe(), "cpu": host().cpu_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
