"""Two or more training runs side by side: mean validation accuracy per phase of epochs, and each run's gain over
the first (BENCHMARKS sections 36 and 37 compare QAT runs that differ in one setting this way).

    python benchmarks/validation_by_phase.py \
        benchmarks/results/frontier-strongkd/s2-sparse40-w3a3-e40-gradual70/log.jsonl \
        benchmarks/results/frontier-strongkd/s2-sparse40-w3a3-e40-gradual70-actmse/log.jsonl --ends 10,20,27,40

A phase runs from the epoch after the previous end to its own end (1-based, inclusive); a run shorter than a phase
is averaged over the epochs it has, and a phase it has none of prints a dash. The last record of an epoch counts
(a resumed run may log one twice). A run is named by its folder, or ``LABEL=PATH`` names it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def validation_by_epoch(log: Path) -> dict[int, float]:
    """Each epoch's validation accuracy in percent, from a trainer's ``log.jsonl``."""
    by_epoch = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "val_acc" in record:
            by_epoch[int(record["epoch"])] = 100 * float(record["val_acc"])
    if not by_epoch:
        raise SystemExit(f"{log}: no epoch with a validation accuracy")
    return by_epoch


def phase_ends(text: str) -> list[int]:
    """``10,20,40`` as [10, 20, 40]: increasing epoch numbers from 1, or argparse's usage error."""
    try:
        ends = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of epochs: {text!r}") from None
    if not ends or ends != sorted(set(ends)) or ends[0] < 1:
        raise argparse.ArgumentTypeError(f"phase ends must be increasing epoch numbers from 1: {text!r}")
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="log.jsonl files ([LABEL=]PATH); the first is the reference")
    # One comma-separated token, so that it can stand before or after the logs (a space-separated list swallowed
    # the logs that followed it).
    parser.add_argument("--ends", type=phase_ends, required=True,
                        help="last epoch of each phase, increasing, comma-separated: 10,20,40")
    args = parser.parse_args()
    labelled = [item.split("=", 1) if "=" in item else (Path(item).parent.name, item) for item in args.logs]
    labels = [label for label, _ in labelled]
    runs = [validation_by_epoch(Path(path)) for _, path in labelled]
    phases = list(zip([0, *args.ends[:-1]], args.ends, strict=True))
    print("| run | " + " | ".join(f"epochs {start + 1}-{end}" for start, end in phases) + " |")
    print("| --- |" + " ---: |" * len(phases))
    means: list[list[float | None]] = []
    for label, run in zip(labels, runs, strict=True):
        row = [statistics.fmean(v) if (v := [run[e] for e in range(start + 1, end + 1) if e in run]) else None
               for start, end in phases]
        means.append(row)
        print(f"| {label} | " + " | ".join("-" if m is None else f"{m:.2f}%" for m in row) + " |")
    for label, row in zip(labels[1:], means[1:], strict=True):
        gains = ["-" if m is None or ref is None else f"{m - ref:+.2f}" for m, ref in zip(row, means[0], strict=True)]
        print(f"| gain of {label} | " + " | ".join(gains) + " |")


if __name__ == "__main__":
    main()
