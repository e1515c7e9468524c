"""A Markdown model card beside every export: what the model is, how it was made, and what it measures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimbench.artifact import atomic_write
from slimbench.data import CIFAR_MEAN, CIFAR_STD
from slimbench.hardware import BUSY_CORES
from slimbench.measure.counts import ModelCounts
from slimbench.measure.latency import Latency
from slimbench.score import ScoreInputs, compute_score, pruning_ratios


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"


def _lineage_rows(lineage: list[dict[str, Any]]) -> list[str]:
    rows = ["| # | stage | when | key settings | result |", "|---|---|---|---|---|"]
    for i, step in enumerate(lineage, start=1):
        config = step.get("config") or {}
        metrics = step.get("metrics") or {}
        stage = step.get("stage", "?")
        if stage == "train":
            optimizer = config.get("optimizer") or {}
            settings = (f"{config.get('epochs')} epochs, {optimizer.get('name')} lr {optimizer.get('lr')}, "
                        f"init_from={'yes' if config.get('init_from') else 'no'}")
            result = f"val {_pct(metrics.get('val_acc'))}, test {_pct(metrics.get('test_acc'))}"
        elif stage == "prune":
            settings = f"{config.get('kind')} {config.get('method')} ratio {config.get('ratio')} ({config.get('target')})"
            result = (f"{metrics.get('params_before', 0):,} -> {metrics.get('params_after', 0):,} params, "
                      f"Ps {metrics.get('structured_ratio', 0):.3f}, Pu {metrics.get('unstructured_ratio', 0):.3f}")
        elif stage == "quantize":
            settings = f"{config.get('mode')}, calibration {config.get('calibration')}"
            parent = (f"float {_pct(metrics['float_test_acc'])}" if "float_test_acc" in metrics
                      else f"QAT parent {_pct(metrics.get('parent_test_acc'))}")
            result = f"test {_pct(metrics.get('test_acc'))} ({parent})"
        else:
            settings, result = json.dumps(config)[:80], ""
        rows.append(f"| {i} | {stage} | {step.get('time', '')} | {settings} | {result} |")
    return rows


def _floats(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.8g}" for v in values)


def _memory_line(memory: dict[str, Any] | None) -> list[str]:
    if not memory or "peak_ram_bytes" not in memory:
        return []
    return [f"- For a microcontroller: flash {memory['flash_bytes']:,} B (conv/linear weights at "
            f"{memory['weight_bits']:.3g} bits, a 32-bit bias and scale per output channel); peak RAM "
            f"{memory['peak_ram_bytes']:,} B at batch 1 (activations alive at once at {memory['activation_bits']:.3g} "
            f"bits, largest at {memory['peak_at']})"]


def _io_line(io: dict[str, Any] | None, counts: ModelCounts) -> str:
    """The input the file takes and the output it gives: float for ONNX files, as declared for LiteRT files."""
    normalised = (f"RGB scaled to [0, 1] then normalised per channel with mean ({_floats(CIFAR_MEAN)}) and std "
                  f"({_floats(CIFAR_STD)})")
    if not io:
        return f"input `images` float [N, {', '.join(map(str, counts.input_shape))}], {normalised}; output `logits`"
    shape = ", ".join(map(str, io["input_shape"]))
    if io["input_dtype"].startswith("int"):
        (scale, zero), (out_scale, out_zero) = io["input_quantization"], io["output_quantization"]
        return (f"input {io['input_dtype']} [{shape}]: {normalised}, then quantized with scale {scale:.6g} and zero "
                f"point {zero} (round(x / scale) + zero point); output {io['output_dtype']} logits with scale "
                f"{out_scale:.6g} and zero point {out_zero} ((y - zero point) x scale)")
    return f"input {io['input_dtype']} [{shape}], {normalised}; output {io['output_dtype']} logits"


def _latency_rows(timings: list[Latency], engines: list[dict[str, Any]] | None = None,
                  reference: str = "ONNX Runtime running the file as exported") -> list[str]:
    if not timings:  # export times the engines unless told not to
        return ["Not measured (exported with `--no-latency`)."]
    by_engine = {row["engine"]: row for row in engines or []}

    def accuracy(engine: str) -> str:
        row = by_engine.get(engine)
        if row is None:
            return "-"
        verdict = "faithful" if row["faithful"] else f"not faithful: {row['note']}"
        return f"{_pct(row['test_acc'])} ({row['correct']:,}/{row['images']:,}; {verdict})"

    rows = ["| engine | precision | median ms | p90 ms | p99 ms | images/s | threads | test accuracy |",
            "|---|---|---|---|---|---|---|---|",
            *[f"| {t.engine} | {t.precision} | {t.median_ms:.3f} | {t.p90_ms:.3f} | {t.p99_ms:.3f} | "
              f"{t.images_per_s:.0f} | {t.threads} | {accuracy(t.engine)} |" for t in timings]]
    crowded = max((t.busy_cores or 0 for t in timings), default=0)
    if crowded >= BUSY_CORES:
        rows += ["", f"Timed while other processes kept up to {crowded:.1f} cores busy: slower than this CPU alone."]
    if engines:
        faithful = [t for t in timings if by_engine.get(t.engine, {}).get("faithful")]
        best = min(faithful, key=lambda t: t.median_ms, default=None)
        rows += ["", f"Fastest faithful engine on this CPU: **{best.engine} ({best.precision})**, {best.median_ms:.3f} ms. "
                 f"Faithful: same predictions as {reference} (the parity gate) and test "
                 "accuracy within 0.1 point of it." if best else "No engine timed here is faithful."]
    return rows


_RUNTIME_PACKAGES = {"ONNX Runtime": "onnxruntime", "LiteRT": "ai-edge-litert"}


def _run_it(model_file: Path, script: Path | None, runtime: str) -> list[str]:
    if script is None:
        return []
    return ["## Run it without slimbench", "",
            f"`{script.name}` (beside the model) needs only NumPy and {runtime}; it applies the normalisation "
            "above" + (" and the file's input quantization" if runtime == "LiteRT" else "") + " and names the classes:",
            "",
            "```",
            f"pip install numpy {_RUNTIME_PACKAGES[runtime]}",
            f"python {script.name} images.npy   # uint8 RGB images [N, H, W, 3]; prints one class name per image",
            f"python {script.name} cat.png       # picture files, resized to the input size (needs Pillow)",
            "```", "",
            f"From Python: `from predict import classify, logits`. Keep `{script.name}` beside `{model_file.name}`.", ""]


def _kept_line(scored: int, nonzero: int) -> str:
    """The score's w beside the non-zero count when they differ: a low-bit grid rounds some kept weights to zero
    (stored levels, counted in w), and a kept weight can be exactly zero."""
    if scored == nonzero:
        return f"{nonzero:,} non-zero, the score's w"
    return f"{scored:,} kept by pruning, the score's w; {nonzero:,} of them non-zero"


def write_model_card(path: Path, model_file: Path, sidecar: dict[str, Any], counts: ModelCounts,
                     parity: dict[str, Any], timings: list[Latency], commands: list[str],
                     predict_script: Path | None = None, engines: list[dict[str, Any]] | None = None,
                     runtime: str = "ONNX Runtime", memory: dict[str, Any] | None = None) -> Path:
    """``runtime``: what runs the file, ONNX Runtime or LiteRT (its input/output and the predict.py it needs);
    ``memory``: flash and batch-1 peak RAM as ``measure`` reports them (``report["memory"]``)."""
    quant = sidecar.get("quant") or {}
    lineage = sidecar.get("lineage") or []
    metrics = sidecar.get("metrics") or {}
    qw, qa = float(quant.get("weight_bits", 32)), float(quant.get("activation_bits", 32))
    ps, pu = pruning_ratios(lineage)
    # w as `score` counts it: a low-bit grid's zeros are stored levels, not pruned weights
    w = float(metrics.get("nonzero_params", counts.nonzero_params))
    scored_qw = float(metrics.get("scored_weight_bits", qw))  # the mean over the weights w counts, as `score` takes it
    score = compute_score(ScoreInputs(w=w, f=counts.macs, ps=ps, pu=pu, qw=scored_qw, qa=qa,
                                      op_bits=quant.get("op_bits")), "brief")
    test_acc = metrics.get("test_acc")
    lines = [
        f"# Model card: {model_file.name}",
        "",
        f"- Architecture: `{json.dumps(sidecar.get('spec'))}`"
        + (f", {len(sidecar['structure'])} layers resized by structured pruning" if sidecar.get("structure") else ""),
        f"- File: `{model_file.name}`, {model_file.stat().st_size:,} bytes, " + _io_line(metrics.get("io"), counts),
        f"- Parameters: {counts.params:,} ({_kept_line(int(w), counts.nonzero_params)}); MACs per image: "
        f"{counts.macs:,} (rule {counts.rule})",
        f"- Bits: weights {qw:.3g}"
        + (f" over the dense tensors, {scored_qw:.3g} over the weights as stored (the score's qw)"
           if abs(scored_qw - qw) >= 0.005 else "") + f", activations {qa:.3g}"
        + (f" ({quant.get('mode')}, {quant.get('format', 'torch')})" if quant else "")
        + (f". {quant['note']}" if quant.get("note") else ""),
        f"- Accuracy: validation {_pct(metrics.get('val_acc'))}, test {_pct(test_acc)} "
        "(model selection on the validation split only)",
        f"- Score (preset `brief`, lower is better): **{score.total:.5f}** = {score.param_term:.4f} (parameters) + "
        f"{score.op_term:.4f} (operations); w and f measured on the model as exported, Ps={ps:.3f}, Pu={pu:.3f} "
        "recorded from the lineage"
        + ("" if isinstance(test_acc, int | float) and test_acc >= 0.9 else " (not eligible: test accuracy below 90%)"),
        *_memory_line(memory),
        f"- Parity with PyTorch on {parity.get('images')} test images: top-1 agreement "
        f"{_pct(parity.get('top1_agreement'))}, max logit difference {parity.get('max_abs_diff', 0):.3g}",
        "",
        "## Latency on this CPU (batch 1), per engine",
        "",
        *_latency_rows(timings, engines, "ONNX Runtime running the file as exported" if runtime == "ONNX Runtime"
                       else "PyTorch"),
        "",
        *_run_it(model_file, predict_script, runtime),
        "## Lineage",
        "",
        *_lineage_rows(lineage),
        "",
        "## Reproduce",
        "",
        "```",
        *(commands or ["(commands not recorded)"]),
        "```",
        "",
    ]
    atomic_write(path, "\n".join(lines).encode())
    return path
