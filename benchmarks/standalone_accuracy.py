"""Test accuracy of an export run through its predict.py (NumPy + ONNX Runtime only), against its sidecar's.

    SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/standalone_accuracy.py EXPORT_DIR [EXPORT_DIR ...]

Each EXPORT_DIR is what `slimbench export` wrote (model[.int8|.fp16|.lowbit].onnx, its .json sidecar,
predict.py). slimbench only loads the test images here; predict.py does the preprocessing and inference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from slimbench.data import load_cifar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data = load_cifar("cifar10", data_dir=args.data_dir)
    images = data.test_x.permute(0, 2, 3, 1).numpy()  # predict.py takes uint8 RGB [N, H, W, 3]
    labels = data.test_y.numpy()
    print(f"{'export':48} {'predict.py':>10} {'recorded':>9} {'img/s':>7}")
    for folder in args.exports:
        spec = importlib.util.spec_from_file_location(f"predict_{folder.name}", folder / "predict.py")
        predict = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(predict)
        predict.logits(images[:8])  # session creation is not inference
        started = time.perf_counter()
        predicted = np.concatenate([predict.logits(images[i:i + 500]).argmax(1) for i in range(0, len(images), 500)])
        seconds = time.perf_counter() - started
        sidecar = json.loads(predict.MODEL.with_suffix(".json").read_text())
        recorded = (sidecar.get("metrics") or {}).get("test_acc")
        print(f"{folder!s:48} {100 * (predicted == labels).mean():9.2f}% "
              f"{'-' if recorded is None else f'{100 * recorded:.2f}%':>9} {len(images) / seconds:7.0f}")


if __name__ == "__main__":
    main()
