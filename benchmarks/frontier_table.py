"""The frontier as one table: every model tried, scored under the three rules, with its Pareto status.

For each model file (a .pt artifact, or an exported .onnx/.tflite with its sidecar): validation and test
accuracy as recorded (test evaluated in the stored precision), w and f as `slimbench score` reads them, qw,
max(qw, qa), Ps and Pu from the lineage, the score under `brief`, `course-macs` and `micronet-ops`, flash and
batch-1 peak RAM, and the training time of its lineage (every train, prune fine-tune and QAT step). Published
anchors are printed beside them. A model is on the Pareto front when no other eligible model has both a
test accuracy at least as high and a brief score at least as low, one of them strictly.

Usage: python benchmarks/frontier_table.py LABEL=PATH ... [--json OUT]
       (an export whose source model has moved: LABEL=EXPORT::SOURCE, the source as committed)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimbench.artifact import is_exported_file, load_artifact, read_sidecar
from slimbench.measure import memory_of
from slimbench.score import compute_score, inputs_from_artifact, load_rule

RULES = ("brief", "course-macs", "micronet-ops")
ANCHORS = [
    ("APoT ResNet-20 W2A2 (yhhhli/APoT_Quantization README)", "90.96% test, 2-bit weights and activations"),
    ("Distiller AGP filter pruning of ResNet-20 (resnet20_filters.schedule_agp_4.yaml)",
     "90.89% test, 78,776 parameters, 24.7M MACs, fp32"),
    ("MicroNet 2019 CIFAR-100 winner", "score 0.0044 under MicroNet's own counting, CIFAR-100 (another task)"),
    ("the brief's best (reported)", "91.59% validation, 198,309 parameters, score 0.0563 claimed"),
]


def _lineage_and_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if is_exported_file(path):
        sidecar = read_sidecar(path)
        return sidecar.get("lineage") or [], sidecar.get("metrics") or {}
    artifact = load_artifact(path)
    return artifact.lineage, artifact.metrics


def row_of(label: str, path: Path, source: Path | None = None) -> dict[str, Any]:
    lineage, metrics = _lineage_and_metrics(path)
    row: dict[str, Any] = {"model": label, "path": str(path), "val_acc": metrics.get("val_acc")}
    for rule_name in RULES:
        inputs, test_acc = inputs_from_artifact(path, load_rule(rule_name), source=source)
        breakdown = compute_score(inputs, rule_name)
        row[f"score_{rule_name}"] = breakdown.total
        if rule_name == "brief":
            row.update(test_acc=test_acc, w=inputs.w, f=inputs.f, qw=inputs.qw, max_bits=inputs.max_bits, ps=inputs.ps,
                       pu=inputs.pu, param_term=breakdown.param_term, op_term=breakdown.op_term)
    row.update(memory_of(source or path) or {})  # an export is counted on the network it was exported from
    # every step that trained: the model's own training and each fine-tune after pruning or for QAT
    seconds = [float((step.get("metrics") or {}).get("train_seconds") or 0) for step in lineage]
    row["train_s"] = sum(seconds) or None
    return row


def pareto(rows: list[dict[str, Any]]) -> None:
    eligible = [r for r in rows if (r["test_acc"] or 0) >= 0.9]
    for r in rows:
        r["pareto"] = r in eligible and not any(_dominates(o, r) for o in eligible)


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """At least as accurate and at least as light, and better in one of the two."""
    return (a["test_acc"] >= b["test_acc"] and a["score_brief"] <= b["score_brief"]
            and (a["test_acc"] > b["test_acc"] or a["score_brief"] < b["score_brief"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="LABEL=PATH")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for label, _, paths in (item.partition("=") for item in args.models):
        path, _, source = paths.partition("::")  # an export, then the model it came from where it is now
        rows.append(row_of(label, Path(path), Path(source) if source else None))
    pareto(rows)
    rows.sort(key=lambda r: r["score_brief"])

    def pct(value: Any) -> str:
        return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"

    def size(value: Any) -> str:  # "-" where memory_of could not measure the model, never a made-up 0
        return f"{value:,} B" if isinstance(value, int) else "-"

    print("| model | val | test | w | f (MACs) | qw | max(qw,qa) | Ps | Pu | brief | course-macs | micronet-ops | "
          "flash | peak RAM | training | Pareto |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |")
    for r in rows:
        train = f"{r['train_s'] / 3600:.1f} h" if r.get("train_s") else "-"
        print(f"| {r['model']} | {pct(r['val_acc'])} | {pct(r['test_acc'])} | {r['w']:,.0f} | {r['f']:,.0f} | "
              f"{r['qw']:.3g} | {r['max_bits']:.3g} | {r['ps']:.2f} | {r['pu']:.2f} | {r['score_brief']:.5f} | "
              f"{r['score_course-macs']:.4f} | {r['score_micronet-ops']:.4f} | {size(r.get('flash_bytes'))} | "
              f"{size(r.get('peak_ram_bytes'))} | {train} | {'yes' if r['pareto'] else ''} |")
    print()
    for name, figures in ANCHORS:
        print(f"- anchor: {name}: {figures}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
