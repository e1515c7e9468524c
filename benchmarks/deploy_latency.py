"""Batch-1 (and batch-N) CPU latency of saved models, PyTorch eager beside ONNX Runtime, in one run.

Each checkpoint (model.pt) is timed with PyTorch eager and, through a temporary ONNX export, with ONNX
Runtime; each int8 ONNX file (with its slimbench sidecar) with ONNX Runtime. All through
``slimbench.measure.measure``, the one latency code of the tool. Also prints parameters, MACs, file size
and the recorded test accuracy.

Usage: python benchmarks/deploy_latency.py LABEL=PATH ... [--batch-sizes 1,64] [--repeats 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import torch

from slimbench.measure import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="LABEL=PATH to a model.pt or a slimbench .onnx file")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    rows = []
    for item in args.models:
        label, _, path = item.partition("=")
        engines = ("onnxruntime",) if path.endswith(".onnx") else ("pytorch-eager", "onnxruntime")
        report = measure(path, latency=True, batch_sizes=sizes, repeats=args.repeats, engines=engines)
        file_bytes = Path(path).stat().st_size
        for t in report["latency"]:
            rows.append({"model": label, "path": path, "params": report["params"],
                         "nonzero_params": report["nonzero_params"], "macs": report["macs"], "file_bytes": file_bytes,
                         "quant": (report.get("quant") or {}).get("mode", "fp32"), **t})
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {datetime.now(UTC):%Y-%m-%d}")
    print(f"{'model':<18}{'engine':<16}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'img/s':>10}"
          f"{'threads':>8}{'params':>10}{'MACs':>13}")
    for r in rows:
        print(f"{r['model']:<18}{r['engine']:<16}{r['batch_size']:>6}{r['median_ms']:>10.3f}{r['p90_ms']:>10.3f}"
              f"{r['p99_ms']:>10.3f}{r['images_per_s']:>10.0f}{r['threads']:>8}{r['params']:>10,}{r['macs']:>13,}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
