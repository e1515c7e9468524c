"""The ``slimbench`` command: a thin typer skin over the Python API (one command per stage)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from slimbench.errors import ConfigError, SlimbenchError
from slimbench.hardware import BUSY_CORES

app = typer.Typer(
    name="slimbench",
    help="Find light, efficient image classifiers: train, compress, measure, score, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped into a file or a log, rich would assume 80 columns, cut numbers short ("21,516,…") and split paths in
# titles: 200 columns there unless COLUMNS says otherwise (tables stay as wide as their contents).
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
BORDERLINE = 0.001  # an accuracy this close to the line (ten test images) needs a second evaluation (issue 19)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder with the dataset files (npz, binary or python batches). "
                 "Default: $SLIMBENCH_DATA, else the cache (downloaded when absent)."),
]


def _title(text: str) -> Text:
    """A table title that runs past a narrow table instead of wrapping: paths stay whole (copyable)."""
    return Text(text, no_wrap=True, overflow="ignore")


def _config_from_flags(model: Any, path: Path | None, flags: dict[str, Any], sets: list[str] | None,
                       extra: dict[str, Any] | None = None) -> Any:
    """The one way a command turns its flags into a config: the YAML file, then the flags that were given
    (dotted keys), then computed keys, then every --set; validated whole, so a wrong key is one clear error."""
    from slimbench.config import load_config, parse_override

    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(extra or {})
    overrides.update(dict(parse_override(item) for item in sets or []))
    return load_config(model, path, overrides)


def _dataset_of(checkpoint: Path, data_dir: Path | None) -> Any:
    """The dataset a model was trained on, from --data-dir (None: where its lineage says, else the defaults)."""
    if data_dir is None:
        return None
    from slimbench.artifact import load_artifact
    from slimbench.compress.calibration import dataset_for

    return dataset_for(load_artifact(checkpoint), data_dir=data_dir)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see configs/); flags override it.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name, e.g. resnet20 (see `slimbench models`).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    dataset: Annotated[str | None, typer.Option(help="cifar10, cifar100 or synthetic.")] = None,
    data_dir: DataDir = None,
    name: Annotated[str | None, typer.Option(help="Run name: the run directory is runs/NAME.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any config key: --set optimizer.lr=0.05")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory from its last epoch.")] = None,
    teacher: Annotated[Path | None, typer.Option(help="With --resume: the distillation teacher's file where it is "
                                                 "now, for a run directory moved from where it was made.")] = None,
    runs_root: Annotated[Path | None, typer.Option(help="Where run directories go (default ./runs).")] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Train a model; writes runs/NAME/ (config, log, checkpoints, curves) and a row in runs/slimbench.db."""
    from slimbench.train import TrainConfig, resume_training
    from slimbench.train import train as run_training

    if teacher is not None and resume is None:
        raise ConfigError("--teacher goes with --resume; a new run names its teacher with --set distill.teacher=PATH")
    if resume is not None:
        result = resume_training(resume, epochs=epochs, progress=progress, teacher=teacher)
    else:
        fresh_model = model is not None and config is None  # a model named without a file: its defaults, not the file's
        flags = {"model.model": None if fresh_model else model, "epochs": epochs, "batch_size": batch_size,
                 "optimizer.lr": lr, "data.name": dataset, "name": name, "device": device,
                 "data.dir": str(data_dir) if data_dir else None}
        cfg = _config_from_flags(TrainConfig, config, flags, set_, {"model": {"model": model}} if fresh_model else None)
        result = run_training(cfg, progress=progress, runs_root=runs_root)
    m = result.metrics
    table = Table(title=_title(f"run {result.run_dir}"), show_header=False)
    for label, value in (
        ("model", str(result.model_path)),
        ("selected epoch", f"{m['selected_epoch']} ({m['selection']})"),
        ("validation accuracy", _pct(m.get("val_acc"))),
        ("test accuracy", _pct(m["test_acc"])),
        ("parameters", f"{m['params']:,}"),
        ("training time", f"{m['train_seconds']:.0f} s, {m['mean_images_per_s']:.0f} img/s ({m['precision']})"),
    ):
        table.add_row(label, value)
    console.print(table)


@app.command()
def prune(
    checkpoint: Annotated[Path, typer.Argument(help="The model artifact to prune (model.pt of a run).")],
    config: Annotated[Path | None, typer.Option(help="YAML pruning config (see configs/); flags override it.")] = None,
    kind: Annotated[str | None, typer.Option(help="structured (channels removed) or unstructured (weights zeroed).")] = None,
    method: Annotated[str | None, typer.Option(help="l1, l2, bn_scale, taylor or random (unstructured: l1, random).")] = None,
    ratio: Annotated[float | None, typer.Option(help="Share to remove: of the original parameters/MACs/channels "
                                                "(structured, see --target) or of the selected weights (unstructured).")] = None,
    target: Annotated[str | None, typer.Option(help="What --ratio measures (structured): params, macs, channels, score.")] = None,
    scope: Annotated[str | None, typer.Option(help="global (one ranking) or layer (same ratio per layer).")] = None,
    layers: Annotated[str | None, typer.Option(help="Layer types to prune: conv, linear or conv,linear "
                                               "('linear' is the brief's linear pruning).")] = None,
    steps: Annotated[int | None, typer.Option(help="Iterative pruning in this many steps (fine-tune after each).")] = None,
    finetune_epochs: Annotated[int | None, typer.Option(help="Fine-tune this many epochs after each step.")] = None,
    finetune_lr: Annotated[float | None, typer.Option(help="Fine-tuning learning rate.")] = None,
    distill: Annotated[bool, typer.Option(help="Fine-tune with the unpruned model as teacher.")] = False,
    name: Annotated[str | None, typer.Option(help="Run name: the output directory is runs/NAME.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (re-run with the same one to resume).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: --set finetune.optimizer.lr=0.01")] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Prune a model (structured with Torch-Pruning, or unstructured), optionally fine-tuning; writes model.pt."""
    from slimbench.compress import PruneConfig
    from slimbench.compress import prune as run_prune

    flags = {"kind": kind, "method": method, "ratio": ratio, "target": target, "scope": scope, "name": name,
             "finetune.epochs": finetune_epochs, "finetune.optimizer.lr": finetune_lr,
             "layers": None if layers is None else [part.strip() for part in layers.split(",") if part.strip()],
             "steps": steps, "schedule": None if steps is None else "iterative" if steps > 1 else "oneshot",
             "distill_from_parent": True if distill else None}
    cfg = _config_from_flags(PruneConfig, config, flags, set_)
    result = run_prune(checkpoint, cfg, run_dir=out, progress=progress)
    table = Table(title=_title(f"pruned {checkpoint} -> {result.model_path}"), box=box.SIMPLE_HEAD)
    for col in ("step", "ratio", "params", "non-zero", "MACs", "Ps", "Pu", "val%", "test%"):
        table.add_column(col, justify="right")
    for row in result.metrics["steps"]:
        table.add_row(
            str(row["step"]), f"{row['ratio']:.3f}", f"{row['params_after']:,}", f"{row['nonzero_after']:,}",
            f"{row['macs_after']:,}", f"{row['structured_ratio']:.3f}", f"{row['unstructured_ratio']:.3f}",
            _pct(row.get("val_acc")).rstrip("%"), _pct(row.get("test_acc")).rstrip("%"),
        )
    console.print(table)


@app.command()
def quantize(
    checkpoint: Annotated[Path, typer.Argument(help="A float model artifact (model.pt), pruned or not; for qat, "
                                                    "also a QAT model (progressive: fewer bits).")],
    mode: Annotated[str, typer.Option(help="fp16, bf16 (half-width artifact), int8 (ONNX Runtime QDQ model) or qat "
                                           "(low-bit quantization-aware training with Brevitas).")] = "int8",
    out: Annotated[Path | None, typer.Option(help="Output directory (default: beside the checkpoint, quant-MODE/).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML quantization config; flags override it.")] = None,
    calibration: Annotated[str | None, typer.Option(help="int8 activation ranges: minmax, percentile or entropy.")] = None,
    calibration_size: Annotated[int | None, typer.Option(help="Training images used for calibration.")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="qat: weight bits, 2-8 (default 4).")] = None,
    activation_bits: Annotated[int | None, typer.Option(help="qat: bits of each layer's inputs, 2-8 (default 4).")] = None,
    first_last_bits: Annotated[int | None, typer.Option(help="qat: bits of the first and last layer (default 8).")] = None,
    epochs: Annotated[int | None, typer.Option(help="qat: training epochs (0: calibrate only).")] = None,
    lr: Annotated[float | None, typer.Option(help="qat: learning rate.")] = None,
    distill: Annotated[bool | None, typer.Option("--distill/--no-distill", help="qat: distil from the parent model.")] = None,
    data_dir: DataDir = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: --set per_channel=false")] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Quantize a model: fp16/bf16 halve the file; int8 runs with ONNX Runtime's integer kernels; qat trains w2-w8/a2-a8."""

    from slimbench.compress import QuantizeConfig
    from slimbench.compress import quantize as run_quantize

    flags = {"mode": mode, "calibration": calibration, "calibration_size": calibration_size,
             "weight_bits": weight_bits, "activation_bits": activation_bits, "first_last_bits": first_last_bits,
             "distill_from_parent": distill}
    extra: dict[str, Any] = {}
    if epochs == 0:  # calibrate only
        extra["finetune"] = None
    elif epochs is not None or lr is not None:
        default_epochs = (QuantizeConfig.model_fields["finetune"].default or {}).get("epochs")
        flags["finetune.epochs"] = epochs or (None if config else default_epochs)
        flags["finetune.optimizer.lr"] = lr
    cfg = _config_from_flags(QuantizeConfig, config, flags, set_, extra)
    result = run_quantize(checkpoint, cfg, out or checkpoint.parent / f"quant-{cfg.mode}", progress=progress,
                          dataset=_dataset_of(checkpoint, data_dir))
    m = result.metrics
    table = Table(title=_title(f"{cfg.mode}: {result.path}"), show_header=False, box=box.SIMPLE)
    if cfg.mode == "qat":
        table.add_row("bits (effective)", f"weights {m['weight_bits']:.3g}, activations {m['activation_bits']:.3g}, "
                                          f"max(qw, qa) {m['op_bits']:.3g} (MAC-weighted)")
        levels = m.get("levels_by_bits") or {}
        table.add_row("weight levels", ", ".join(f"{b}-bit layers: at most {n} per output channel (of {2 ** int(b) - 1})"
                                                 for b, n in levels.items()))
        if m.get("test_acc") is not None:
            parent = (f"float test {_pct(m['float_test_acc'])}" if "float_test_acc" in m
                      else f"its QAT parent's test {_pct(m.get('parent_test_acc'))}")
            table.add_row("accuracy", f"val {_pct(m.get('val_acc'))}, test {_pct(m['test_acc'])} ({parent})")
        console.print(table)
        return
    table.add_row("test accuracy", f"{_pct(m['test_acc'])} (float {_pct(m['float_test_acc'])}, "
                                   f"drop {100 * m['accuracy_drop']:.2f} points)")
    table.add_row("file", f"{m['file_bytes']:,} bytes (float {m['float_file_bytes']:,}: "
                          f"{m['float_file_bytes'] / m['file_bytes']:.2f}x smaller)")
    if "parity" in m:
        table.add_row("agreement with float", f"{_pct(m['parity']['top1_agreement'])} top-1 on "
                                              f"{m['parity']['images']} test images")
    console.print(table)
    if cfg.mode == "int8":
        console.print(f"to deploy it with a model card and predict.py: slimbench export {checkpoint} --int8")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A model artifact (model.pt), pruned or not.")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: beside the checkpoint, export/, or "
                                             "export-tflite/ for tflite).")] = None,
    format_: Annotated[str, typer.Option("--format", help="onnx; tflite (LiteRT, float32 or full-integer int8, needs "
                                         "slimbench[litert]); or torchscript (float32, for libtorch).")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 (ONNX: static QDQ quantization; tflite: "
                                           "full-integer int8).")] = "fp32",
    int8: Annotated[bool, typer.Option("--int8", help="Same as --precision int8.")] = False,
    fixed_batch: Annotated[int | None, typer.Option(help="Export with this fixed batch size instead of a dynamic one.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    data_dir: DataDir = None,
    latency: Annotated[bool, typer.Option(help="Time PyTorch and ONNX Runtime at batch 1 for the model card.")] = True,
) -> None:
    """Export to ONNX, LiteRT or TorchScript, prove it matches PyTorch on test images, and write MODEL_CARD.md beside it."""
    import shlex

    from slimbench.export import export as run_export

    chosen = "int8" if int8 else precision
    if chosen not in ("fp32", "fp16", "int8"):
        raise SlimbenchError(f"precision must be fp32, fp16 or int8, got {chosen!r}")
    command = "slimbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    default_out = checkpoint.parent / ("export-tflite" if format_ == "tflite" else "export")
    result = run_export(checkpoint, out or default_out, precision=chosen,  # type: ignore[arg-type]
                        dataset=_dataset_of(checkpoint, data_dir),
                        format=format_,  # type: ignore[arg-type]
                        dynamic_batch=fixed_batch is None, batch_size=fixed_batch or 1, opset=opset, latency=latency,
                        commands=[command])
    p = result.parity
    console.print(f"exported {result.path} ({result.path.stat().st_size:,} bytes)")
    runtime = {"tflite": "LiteRT", "torchscript": "TorchScript"}.get(format_, "ONNX Runtime")
    console.print(f"{runtime} vs PyTorch on {p['images']} test images: top-1 agreement {_pct(p['top1_agreement'])}, "
                  f"max logit difference {p['max_abs_diff']:.3g}; accuracy {_pct(p.get('onnx_accuracy'))} "
                  f"(PyTorch {_pct(p.get('torch_accuracy'))})")
    if format_ == "tflite":
        from slimbench.artifact import read_sidecar

        m = read_sidecar(result.path)["metrics"]
        console.print(f"LiteRT accuracy of the file: test {_pct(m['test_acc'])} ({m['test_correct']:,}/{m['test_images']:,})"
                      + (f", validation {_pct(m['val_acc'])}" if "val_acc" in m else "")
                      + f"; the PyTorch model it came from: test {_pct(m.get('float_test_acc'))}", soft_wrap=True)
    console.print(f"model card: {result.card}")


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A model artifact (model.pt, best.pt).")],
    split: Annotated[str, typer.Option(help="test or val (the validation split the run held out).")] = "test",
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the confusion matrix PNG.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    precision: Annotated[str, typer.Option(
        help="stored (the model's own precision, the default) or bf16/fp16 autocast of a float model, "
             "a speed option whose accuracy is labelled and not the model's.")] = "stored",
) -> None:
    """Re-evaluate a saved model: accuracy, per-class accuracy, confusion matrix (PNG)."""
    from slimbench.measure import evaluate_checkpoint

    report = evaluate_checkpoint(checkpoint, split=split, data_dir=data_dir, confusion_png=out, precision=precision)
    if json_:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=_title(f"{checkpoint} on {report['dataset']} {split} ({report['count']} images, "
                               f"{report['precision']})"))
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for cls, acc in zip(report["classes"], report["per_class"], strict=True):
        table.add_row(cls, _pct(acc))
    table.add_row("[bold]all", f"[bold]{_pct(report['accuracy'])} ({report['correct']:,} / {report['count']:,})")
    console.print(table)
    console.print(f"confusion matrix: {report['confusion_png']}")


@app.command()
def runs(
    root: Annotated[Path | None, typer.Option(help="Runs folder (default ./runs).")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many runs.")] = 30,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List recorded runs from runs/slimbench.db."""
    from slimbench.runs import DB_NAME, ResultsStore, default_runs_root

    path = (root or default_runs_root()) / DB_NAME
    if not path.exists():
        raise SlimbenchError(f"no results store at {path}: run `slimbench train` first")
    records = ResultsStore(path).runs(limit)
    if json_:
        print(json.dumps([r.__dict__ for r in records], indent=2, default=str))
        return
    table = Table(title=_title(str(path)), box=box.SIMPLE_HEAD)
    numeric = ("id", "ep", "val%", "test%", "params", "time")
    for col in ("id", "run", "cmd", "status", "model", "ep", "val%", "test%", "params", "time"):
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=col != "run")
    for r in records:
        m = r.metrics
        table.add_row(
            str(r.id), r.name, r.command, r.status, r.model or "-", str(m.get("epochs_run", "-")),
            _pct(m.get("val_acc")).rstrip("%"), _pct(m.get("test_acc")).rstrip("%"),
            f"{m['params']:,}" if "params" in m else "-", f"{r.wall_s:.0f}s" if r.wall_s else "-",
        )
    console.print(table)


@app.command()
def models() -> None:
    """List the model zoo with parameter counts at 10 classes."""
    from slimbench.models import available_models, build_model, count_parameters, model_arguments

    table = Table(title=_title("slimbench model zoo (10 classes, width 1)"))
    for col in ("model", "parameters", "arguments", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name, description in available_models().items():
        params = count_parameters(build_model({"model": name}))
        args = ", ".join(f"{k}={v}" for k, v in model_arguments(name).items())
        table.add_row(name, f"{params:,}", args, description)
    console.print(table)


@app.command()
def data(
    dataset: Annotated[str, typer.Option(help="cifar10 or cifar100.")] = "cifar10",
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="Download the official archive when absent.")] = True,
) -> None:
    """Locate (or download and cache) a dataset and print what was found."""
    from slimbench.data import load_dataset

    ds = load_dataset(dataset, data_dir, download=download)
    table = Table(title=_title(f"{ds.name}"), show_header=False)
    table.add_row("source", ds.source)
    table.add_row("train", f"{len(ds.train_x):,} images {list(ds.image_shape)}")
    table.add_row("test", f"{len(ds.test_x):,} images")
    table.add_row("classes", f"{ds.num_classes}: {', '.join(ds.classes[:10])}{' ...' if ds.num_classes > 10 else ''}")
    console.print(table)


@app.command("measure")
def measure_(
    target: Annotated[str, typer.Argument(help="A model artifact (model.pt) or a zoo model name (fresh weights).")],
    latency: Annotated[bool, typer.Option(help="Also time CPU inference at batch 1 and 64.")] = False,
    engines: Annotated[str, typer.Option(help="Engines to time: pytorch-eager, pytorch-compile, onnxruntime, "
                                         "openvino (f32), openvino-bf16, litert, or all (every installed one).")] =
        "pytorch-eager,onnxruntime",
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to time, comma-separated.")] = "1,64",
    per_layer: Annotated[bool, typer.Option(help="Show every convolution and linear layer.")] = False,
    accuracy: Annotated[str | None, typer.Option(help="Also measure accuracy on this split: val or test.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Parameters (total, non-zero), MACs by the documented counting rule, size, and optionally latency.

    TARGET may be a model.pt, an exported .onnx or .tflite (with its sidecar), or a zoo model name.
    """
    from slimbench.measure import measure
    from slimbench.measure.latency import ENGINES
    from slimbench.runtimes.litert import litert_available
    from slimbench.runtimes.openvino import openvino_available

    chosen = tuple(e.strip() for e in engines.split(",") if e.strip())
    if chosen == ("all",):
        chosen = tuple(e for e in ENGINES if e != "pytorch-compile" and (openvino_available() or "openvino" not in e)
                       and (litert_available() or e != "litert"))
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown:
        raise SlimbenchError(f"unknown engine {unknown[0]!r}; known: {', '.join(ENGINES)}")
    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise SlimbenchError(f"--batch-sizes must be integers separated by commas, got {batch_sizes!r}") from None
    try:
        report = measure(target, latency=latency, batch_sizes=sizes, engines=chosen, accuracy_split=accuracy)
    except FileNotFoundError as exc:
        raise SlimbenchError(str(exc)) from None
    if json_:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=_title(f"{report['source']}"), show_header=False, box=box.SIMPLE)
    table.add_row("parameters", f"{report['params']:,} ({report['nonzero_params']:,} non-zero)")
    table.add_row("MACs / image", f"{report['macs']:,} (rule {report['rule']}, input {report['input_shape']})")
    table.add_row("MicroNet ops / image", f"{report['micronet_ops']:,.0f} (32-bit equivalents, at the model's bits)")
    table.add_row("size", ", ".join(f"{k}: {v / 1e6:.2f} MB" for k, v in report["size_bytes"].items()))
    if report["nonzero_params"] < report["params"]:
        table.add_row("size, sparse", ", ".join(f"{k}: {v / 1e6:.2f} MB" for k, v in report["sparse_size_bytes"].items())
                      + " (bitmask + non-zero values)")
    if report.get("quant"):
        quant = report["quant"]
        mixed = " (effective: weights by parameters, activations by MACs; --per-layer for each layer)" \
            if quant.get("mode") == "qat" else ""
        table.add_row("stored as", f"{quant.get('mode')}: weights {float(quant.get('weight_bits', 32)):.3g} bits, "
                                   f"activations {float(quant.get('activation_bits', 32)):.3g} bits{mixed}")
    memory = report.get("memory") or {}
    if "peak_ram_bytes" in memory:
        table.add_row("flash", f"{memory['flash_bytes'] / 1024:.1f} KiB (conv/linear weights at {memory['weight_bits']:.3g} "
                               "bits, a 32-bit bias and scale per output channel)"
                      + (f"; the file: {report['file_bytes'] / 1024:.1f} KiB" if report.get("file_bytes") else ""))
        table.add_row("peak RAM, batch 1", f"{memory['peak_ram_bytes'] / 1024:.1f} KiB of activations alive at once "
                                           f"at {memory['activation_bits']:.3g} bits, at {memory['peak_at']}")
    elif memory.get("error"):
        table.add_row("peak RAM, batch 1", f"not measured: {memory['error']}")
    recorded = report.get("recorded_accuracy") or {}
    if recorded:
        table.add_row("accuracy (recorded at export)", ", ".join(f"{'validation' if k == 'val_acc' else 'test'} "
                                                                 f"{_pct(v)}" for k, v in recorded.items()))
    if "accuracy" in report:
        acc = report["accuracy"]
        table.add_row(f"accuracy ({acc['split']})", f"{_pct(acc['accuracy'])} on {acc['images']} images")
    for lat in report.get("latency", []):
        table.add_row(f"latency {lat['engine']} ({lat['precision']}) batch {lat['batch_size']}",
                      f"median {lat['median_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms, "
                      f"{lat['images_per_s']:.0f} img/s, {lat['threads']} threads"
                      + (f", [yellow]{lat['busy_cores']:.1f} cores busy elsewhere: slower than alone[/]"
                         if (lat.get("busy_cores") or 0) >= BUSY_CORES else ""))
    console.print(table)
    if report.get("engines"):
        engines_table = Table(title=_title("engines on the full test set (reference: onnxruntime as exported)"),
                              box=box.SIMPLE_HEAD)
        for col in ("engine", "precision", "test acc", "correct", "agreement", "max logit diff", "faithful"):
            engines_table.add_column(col, justify="left" if col in ("engine", "precision", "faithful") else "right")
        for row in report["engines"]:
            engines_table.add_row(row["engine"], row["precision"], _pct(row["test_acc"]), f"{row['correct']:,}",
                                  _pct(row["top1_agreement"]), f"{row['max_abs_diff']:.3g}",
                                  "yes" if row["faithful"] else f"no: {row['note']}")
        console.print(engines_table)
        best = report.get("fastest_faithful")
        console.print(f"fastest faithful engine: {best['engine']} ({best['precision']}), {best['median_ms']:.2f} ms at "
                      f"batch {best['batch_size']}" if best else "fastest faithful engine: none timed", soft_wrap=True)
    if per_layer:
        layers = Table(box=box.SIMPLE_HEAD)
        for col in ("layer", "kind", "output", "params", "MACs", "bits w/a"):
            layers.add_column(col, justify="right" if col in ("params", "MACs", "bits w/a") else "left")
        for layer in report["layers"]:
            layers.add_row(layer["name"], layer["kind"], "x".join(map(str, layer["output_shape"])),
                           f"{layer['params']:,}", f"{layer['macs']:,}",
                           f"{layer['weight_bits']:g}/{layer['activation_bits']:g}")
        console.print(layers)


@app.command()
def doctor(
    target: Annotated[str, typer.Argument(help="A model artifact, or a zoo model with arguments: "
                                          "densenet121:stem=imagenet,num_classes=1000")],
    classes: Annotated[int | None, typer.Option(help="Classes of the task (default: the model's, else 10).")] = None,
    input_size: Annotated[int, typer.Option(help="Input height/width in pixels.")] = 32,
    budget: Annotated[str | None, typer.Option(help="Memory budget: ram=256KB,flash=1MB, or a board "
                                               "(nano33ble, stm32f746, esp32). Breaking it is an error.")] = None,
) -> None:
    """Static checks that explain poor results before training, each with a one-line fix."""
    from slimbench.measure import diagnose_target

    name, findings = diagnose_target(target, classes, input_size, budget)
    if not findings:
        console.print(f"{name}: no findings")
        return
    colours = {"error": "red", "warn": "yellow", "info": "cyan"}
    for finding in findings:
        console.print(f"[{colours[finding.severity]}]{finding.severity:5}[/] {finding.check}: {finding.message}")
        console.print(f"      fix: {finding.fix}")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
def score(
    checkpoint: Annotated[Path | None, typer.Argument(help="A model artifact: w, f, bits and accuracy are read "
                                                      "from it. Or give --w and --f instead.")] = None,
    w: Annotated[float | None, typer.Option("--w", help="Parameters (non-zero ones after unstructured pruning).")] = None,
    f: Annotated[float | None, typer.Option("--f", help="Operations, counted as the rule says (MACs for 'brief').")] = None,
    ps: Annotated[float, typer.Option("--ps", help="Structured pruning ratio.")] = 0.0,
    pu: Annotated[float, typer.Option("--pu", help="Unstructured pruning ratio.")] = 0.0,
    qw: Annotated[float, typer.Option("--qw", help="Weight bits.")] = 32,
    qa: Annotated[float, typer.Option("--qa", help="Activation bits.")] = 32,
    measured_on: Annotated[str, typer.Option(help="'pruned': w and f counted on the slimmed model (Ps enters as 0); "
                                             "'original': on the unpruned architecture.")] = "pruned",
    rule: Annotated[str, typer.Option(help="Preset (brief, course-macs, micronet-ops) or a YAML rule file.")] = "brief",
    accuracy: Annotated[float | None, typer.Option(help="Top-1 accuracy (0-1) to check eligibility.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Score a checkpoint, or any model from its numbers (lower is better), with both terms and every input."""
    from slimbench.config import validate
    from slimbench.score import ScoreInputs, compute_score, inputs_from_artifact, load_rule

    score_rule = load_rule(rule)
    if checkpoint is not None:
        if w is not None or f is not None:
            raise SlimbenchError("give a checkpoint or --w/--f, not both")
        inputs, recorded = inputs_from_artifact(checkpoint, score_rule)
        accuracy = recorded if accuracy is None else accuracy
    else:
        if w is None or f is None:
            raise SlimbenchError("score needs a checkpoint, or both --w and --f")
        inputs = validate(ScoreInputs, {"w": w, "f": f, "ps": ps, "pu": pu, "qw": qw, "qa": qa,
                                        "measured_on": measured_on}, "score")
    result = compute_score(inputs, score_rule)
    eligible = None if accuracy is None else accuracy >= result.rule.min_accuracy
    # one test image is 0.01 point: within ten of them, the CPU's arithmetic or the engine can decide
    borderline = None if accuracy is None else abs(accuracy - result.rule.min_accuracy) < BORDERLINE
    if json_:
        print(json.dumps({"score": result.total, "param_term": result.param_term, "op_term": result.op_term,
                          "ps_applied": result.ps_applied, "pu_applied": result.pu_applied,
                          "inputs": inputs.model_dump(), "rule": result.rule.model_dump(), "eligible": eligible,
                          "borderline": borderline, "notes": result.notes}, indent=2))
        return
    table = Table(title=_title(f"score, rule '{result.rule.name}' (lower is better)"), show_header=False,
                  box=box.SIMPLE)
    rows = [
        ("w, f", f"{inputs.w:,.0f} parameters, {inputs.f:,.0f} {result.rule.op_counting}"),
        ("Ps, Pu applied", f"{result.ps_applied:g}, {result.pu_applied:g} (given {inputs.ps:g}, {inputs.pu:g}; "
                           f"measured on the {inputs.measured_on} model)"),
        ("qw, qa", f"{inputs.qw:.4g}, {inputs.qa:.4g} bits"),
        ("parameter term", f"(1-{result.ps_applied + result.pu_applied:g}) x {inputs.qw:.4g}/32 x {inputs.w:,.0f}/"
                           f"{result.rule.param_norm:.3g} = {result.param_term:.4f}"),
        ("operation term", f"(1-{result.ps_applied:g}) x "
                           + ("" if result.rule.op_counting == "micronet-ops" else f"{inputs.max_bits:.4g}/32 x ")
                           + f"{inputs.f:,.0f}/{result.rule.op_norm:.3g} = {result.op_term:.4f}"),
        ("[bold]score", f"[bold]{result.total:.5f}"),  # five places: 0.00398 is under 0.004, "0.0040" would not say so
    ]
    if eligible is not None:
        rows.append(("eligible", f"{'yes' if eligible else 'NO'}: accuracy {_pct(accuracy)} vs the rule's "
                                 f"{_pct(result.rule.min_accuracy)}"
                     + (" (within 0.1 point of the line: confirm it with the exported file or on the other CPU "
                        "class before calling it eligible)" if borderline else "")))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"rule source: {result.rule.source or 'user rule'}")


@app.command()
def sensitivity(
    checkpoint: Annotated[Path, typer.Argument(help="A float model artifact (pruned or not), before QAT.")],
    bits: Annotated[str, typer.Option(help="Bit widths to try per layer (weights and inputs), comma-separated.")]
        = "2,3,4,8",
    images: Annotated[int, typer.Option(min=1, help="Validation images each trial is evaluated on.")] = 2000,
    base_bits: Annotated[int, typer.Option(min=2, max=8, help="The width the suggestion starts every layer "
                                           "at (the quantize stage's weight_bits and activation_bits).")] = 4,
    budget: Annotated[float | None, typer.Option(min=0, help="Validation points the suggestion may spend, summed "
                                                 "over the layers it moves below --base-bits (single-layer "
                                                 "trials before QAT).")] = None,
    save: Annotated[float | None, typer.Option(min=0, help="Score to take off: the suggestion stops once its "
                                               "moves save this much.")] = None,
    target_score: Annotated[float | None, typer.Option(min=0, help="The score to reach (under --rule): the "
                                                       "suggestion saves what every layer at --base-bits scores "
                                                       "above it, counted as `score` will read the QAT artifact.")]
        = None,
    protect: Annotated[float | None, typer.Option(min=0, help="Validation points: a layer that loses this much "
                                                  "at --base-bits goes up to --protect-bits.")] = None,
    protect_bits: Annotated[int, typer.Option(min=2, max=8, help="Bits of the protected layers.")] = 8,
    keep_first_last: Annotated[bool, typer.Option(help="Leave the first and last layer out of the suggestion "
                                                  "(first_last_bits governs them).")] = True,
    rule: Annotated[str, typer.Option(help="Score rule whose normalisers weigh each layer's saving.")] = "brief",
    weight_step_init: Annotated[str, typer.Option(help="Start each trial's weight steps as the QAT run will: max "
                                                  "(largest |w| per channel) or mse (least rounding error).")]
        = "max",
    activation_step_init: Annotated[str, typer.Option(help="Start each trial's input steps as the QAT run will: "
                                                      "percentile (Brevitas's) or mse (least quantization "
                                                      "error).")] = "percentile",
    sparsity: Annotated[float | None, typer.Option(help="Count each layer's parameters where the QAT run's gradual "
                                                   "pruning ramp ends (its final_sparsity): the suggestion then "
                                                   "weighs the weights that will be stored.")] = None,
    scope: Annotated[str, typer.Option(help="With --sparsity: the ramp's scope, global (one threshold) or layer.")]
        = "global",
    method: Annotated[str, typer.Option(help="With --sparsity: the ramp's unstructured criterion (l1, lamp, ...).")]
        = "l1",
    exclude: Annotated[list[str] | None, typer.Option(help="With --sparsity: a layer the ramp leaves dense, as its "
                                                      "exclude (repeat it; e.g. conv1).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the per-layer bar chart here (PNG).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the measurements and suggestion here.")]
        = None,
    data_dir: DataDir = None,
) -> None:
    """Per-layer bit sensitivity: each layer alone at each width, validation points lost, and a layer_bits
    suggestion for the quantize stage that saves the most score for the points it spends."""
    import yaml
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from slimbench.artifact import atomic_write
    from slimbench.compress.sensitivity import (
        bit_sensitivity,
        plot_sensitivity,
        suggest_for_target_score,
        suggest_layer_bits,
        suggestion_effect,
    )
    from slimbench.score import load_rule
    from slimbench.score.plan import plan_scorer

    try:
        widths = sorted({int(b) for b in bits.split(",") if b.strip()})
    except ValueError:
        raise SlimbenchError(f"--bits takes comma-separated integers, got {bits!r}") from None
    if base_bits not in widths:
        widths = sorted({*widths, base_bits})
    if budget is None and save is None and target_score is None and protect is None:
        raise SlimbenchError("give --budget (validation points to spend), --save (score to take off), --target-score "
                             "(the score to reach), --protect (the drop that sends a layer up to --protect-bits), "
                             "or several")
    if save is not None and target_score is not None:
        raise SlimbenchError("give --save (score to take off) or --target-score (the score to reach), not both")
    score_rule = load_rule(rule)
    if target_score is not None and score_rule.op_counting != "macs":
        raise SlimbenchError(f"--target-score needs a rule that counts f as MACs; {score_rule.name!r} counts "
                             f"{score_rule.op_counting}")
    ramp = None
    if sparsity is not None:
        from slimbench.config import validate
        from slimbench.sparsity import GradualPruningConfig
        ramp = validate(GradualPruningConfig, {"final_sparsity": sparsity, "scope": scope, "method": method,
                                               "exclude": exclude or []}, "--sparsity/--scope/--method/--exclude")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("sensitivity", total=None)

        def step(layer: str, width: int) -> None:
            bar.update(task, advance=1, description=f"{layer} at {width} bits")

        dataset = _dataset_of(checkpoint, data_dir)
        report = bit_sensitivity(checkpoint, widths, images=images, dataset=dataset,
                                 on_step=step, weight_step_init=weight_step_init,
                                 activation_step_init=activation_step_init, count_params_at=ramp)
    keep = [report.layers[0].name, report.layers[-1].name] if keep_first_last and report.layers else []
    norms = (score_rule.param_norm, score_rule.op_norm)
    score_of = (plan_scorer(checkpoint, ramp, dataset, first_last_bits=8 if keep_first_last else None)
                if score_rule.op_counting == "macs" else None)
    base_score = score_of({}, base_bits, score_rule) if score_of else None

    settings = {"base_bits": base_bits, "budget": None if budget is None else budget / 100, "keep": keep,
                "protect": None if protect is None else protect / 100, "protect_bits": protect_bits}
    if target_score is not None and score_of:
        chosen = suggest_for_target_score(report, lambda layer_bits: score_of(layer_bits, base_bits, score_rule),
                                          target_score, norms, **settings)
    else:
        chosen = suggest_layer_bits(report, norms, target_saving=save, **settings)
    suggested_score = score_of(chosen, base_bits, score_rule) if score_of else None
    table = Table(title=_title(f"{checkpoint}: one layer at a time, validation points lost (float "
                               f"{_pct(report.reference_acc)} on {report.images:,} images)"), box=box.SIMPLE)
    params = "params" if ramp is None else f"params at {ramp.final_sparsity:.0%} ({ramp.scope})"
    for column in ("layer", params, "MACs", *(f"w{b}a{b}" for b in widths), "suggested"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for layer in report.layers:
        pick = chosen.get(layer.name, {}).get("weight_bits")
        table.add_row(layer.name, f"{layer.nonzero_params:,}", f"{layer.macs:,}",
                      *(f"{100 * layer.drops[b]:+.2f}" for b in widths),
                      "kept" if layer.name in keep else str(pick or base_bits))
    console.print(table)
    effect = suggestion_effect(report, chosen, base_bits, norms)
    console.print(f"suggestion: {len(effect['up'])} layer(s) protected at {protect_bits} bits, {len(effect['down'])} "
                  f"below {base_bits} bits for {100 * effect['drop_spent']:.2f} validation points summed over "
                  f"single-layer trials (before QAT, which recovers much of them)"
                  + ("" if base_score is not None else f"; about {effect['score_saved']:+.4f} off the "
                     f"'{score_rule.name}' score in all by the per-layer estimate") + ".")
    if base_score is not None and suggested_score is not None:
        where = "" if ramp is None else f", weights counted at {ramp.final_sparsity:.0%} {ramp.scope} sparsity"
        aim = ""
        if target_score is not None:
            aim = (f": target {target_score:.5f} met" if suggested_score <= target_score else
                   f": target {target_score:.5f} NOT met (no further move within the budget)")
        console.print(f"'{score_rule.name}' score of the QAT plan{where}: every layer at w{base_bits}a{base_bits} "
                      f"{base_score:.5f}, with the suggestion {suggested_score:.5f}{aim}")
    console.print("As the quantize stage's layer_bits:")
    snippet = yaml.safe_dump({"layer_bits": chosen}, default_flow_style=None, sort_keys=False)
    console.print(snippet if chosen else "layer_bits: {}  # no move fits the budget", markup=False, highlight=False)
    if plot:
        console.print(f"plot: {plot_sensitivity(report, plot)}")
    if json_out:
        payload = {**report.to_dict(), "base_bits": base_bits, "budget_points": budget, "save": save,
                   "protect_points": protect, "protect_bits": protect_bits, "rule": score_rule.name,
                   "layer_bits": chosen, "effect": effect, "target_score": target_score,
                   "score_at_base_bits": base_score, "score_suggested": suggested_score}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(json_out, json.dumps(payload, indent=2).encode())
        console.print(f"json: {json_out}")


@app.command()
def demo(
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="Study directory (default: runs/studies/quickstart).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the study's).")] = None,
    train_images: Annotated[int | None, typer.Option(help="Training images (a seeded subset; default: the study's).")] = None,
    val_images: Annotated[int | None, typer.Option(help="Validation images held out (default: the study's).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The quickstart study (studies/quickstart.yaml, also `make demo`): train ResNet-20 with the fast recipe on
    CIFAR-10, prune 30% of it, quantize to int8, export with a model card, compare and write report.html."""
    from importlib.resources import files

    from slimbench.study import Study, load_study, run_study, select, write_report

    study = load_study(Path(str(files("slimbench.study") / "quickstart.yaml")))
    if epochs is not None or train_images is not None or val_images is not None:  # a smaller (or larger) run
        payload = study.model_dump(mode="json", by_alias=True)
        train = payload["experiments"][0]["stages"][0]["train"]
        train.update({"epochs": epochs} if epochs is not None else {})
        data = train.setdefault("data", {})
        data.update({"train_subset": train_images} if train_images is not None else {})
        data.update({"val_size": val_images} if val_images is not None else {})
        study = Study.model_validate(payload).read_from(study.file).check_stages()
    out_dir = out or _study_dir(study.name, False)
    rows = run_study(study, out_dir, progress=progress, data_dir=data_dir,
                     log=lambda line: console.print(f"[dim]{line}[/]"))
    _print_rows(select(rows, "score"), f"study {study.name}")
    for row in rows:
        if str(row.get("model_path", "")).endswith(".int8.onnx"):
            console.print(f"[bold]demo[/]: int8 ONNX {row['model_path']}: test accuracy {_pct(row.get('test_acc'))}, "
                          f"score {row['score']:.4f}" + ("" if row.get("eligible") else " (below the accuracy line)"),
                          soft_wrap=True)
    console.print(f"report: {write_report(out_dir)}", soft_wrap=True)


study_app = typer.Typer(help="Studies: many experiments (train, prune, quantize, export) from one YAML file.",
                        no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run(
    study_file: Annotated[Path, typer.Argument(help="Study YAML (see studies/).")],
    out: Annotated[Path | None, typer.Option(help="Study directory (default: runs/studies/NAME[-smoke]).")] = None,
    smoke: Annotated[bool, typer.Option(help="Every stage for one epoch on a small slice: checks a file in minutes.")] = False,
    backend: Annotated[str, typer.Option(help="local (sequential) or ray (one task per experiment).")] = "local",
    address: Annotated[str | None, typer.Option(help="ray: cluster address (default: a local Ray instance).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these experiments (and what they need).")] = None,
    data_dir: DataDir = None,
    report: Annotated[bool, typer.Option(help="Write report.html when done.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run a study; finished stages are skipped, an interrupted one resumes. Ends with a table and report.html."""

    from slimbench.study import load_study, run_study, select, write_report

    study = load_study(study_file)
    out_dir = out or _study_dir(study.name, smoke)
    rows = run_study(study, out_dir, backend=backend, smoke=smoke, address=address, progress=progress, only=only,
                     log=lambda line: console.print(f"[dim]{line}[/]"), data_dir=data_dir)
    _print_rows(select(rows, "score"), f"study {study.name}" + (" (smoke)" if smoke else ""))
    if report:
        console.print(f"report: {write_report(out_dir)}")


def _duration(seconds: float | None) -> str:
    if not seconds:
        return ""
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def _study_dir(name: str, smoke: bool) -> Path:
    from slimbench.runs import default_runs_root

    return default_runs_root() / "studies" / (name + ("-smoke" if smoke else ""))


@study_app.command("status")
def study_status_(
    study_file: Annotated[Path, typer.Argument(help="Study YAML (see studies/).")],
    out: Annotated[Path | None, typer.Option(help="Study directory (default: runs/studies/NAME[-smoke]).")] = None,
    smoke: Annotated[bool, typer.Option(help="The smoke run's stages.")] = False,
    only: Annotated[list[str] | None, typer.Option(help="Only these experiments (and what they need).")] = None,
    curves: Annotated[Path | None, typer.Option(
        help="Also draw the validation curves of these stages' trainings, overlaid, into this PNG.")] = None,
    against: Annotated[list[str] | None, typer.Option(
        help="With --curves: another run drawn beside them (a kept model's directory, LABEL=PATH; repeatable).")] = None,
) -> None:
    """Where a study stands, read from disk: each stage done, running, interrupted or pending, with its epochs."""
    from slimbench.study import load_study, study_status
    from slimbench.study.curves import load_curves, plot_curves, stage_curves

    if against and curves is None:
        raise SlimbenchError("--against draws beside the study's curves: give --curves PNG too")
    reference = load_curves(list(against or []))  # a bad path stops here, before the table

    study = load_study(study_file)
    out_dir = out or _study_dir(study.name, smoke)
    states = study_status(study, out_dir, smoke=smoke, only=only)
    table = Table(title=_title(f"study {study.name} in {out_dir}"), box=box.SIMPLE_HEAD,
                  caption="val%, test% of a stage not done: its best epoch so far (by validation)")
    # rows of one study often differ only at the end of their names (-seed2, -seed3): the name column is never
    # cut; the others give way first
    table.add_column("experiment", no_wrap=True, min_width=max((len(s.experiment) for s in states), default=10))
    for col, justify in (("stage", "left"), ("state", "left"), ("epochs", "right"), ("val%", "right"),
                         ("test%", "right"), ("took", "right"), ("left (at most)", "right"), ("directory", "left")):
        table.add_column(col, justify=justify)
    colour = {"done": "green", "running": "cyan", "interrupted": "yellow", "pending": "dim", "given": "blue", "missing": "red"}
    for s in states:
        epochs = f"{s.epochs_done}/{s.epochs_planned}" if s.epochs_planned else (str(s.epochs_done) if s.epochs_done else "")
        table.add_row(s.experiment, f"{s.index}. {s.kind}", f"[{colour[s.state]}]{s.state}[/]", epochs,
                      _pct(s.val_acc).rstrip("%"), _pct(s.test_acc).rstrip("%"),
                      _duration(s.wall_s), _duration(s.seconds_left),
                      os.path.relpath(s.directory) if s.kind == "checkpoint" else s.directory.name)
    console.print(table)
    counts = {state: sum(1 for s in states if s.state == state and s.kind != "checkpoint") for state in colour}
    console.print(", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no stages")
    if curves is not None:
        drawn = plot_curves(reference + stage_curves(states), curves)
        console.print(f"curves: {drawn}" if drawn else "curves: not drawn, no stage has logged an epoch yet", style="dim")


@study_app.command("keep")
def study_keep(
    study_file: Annotated[Path, typer.Argument(help="Study YAML the directory was run from.")],
    experiment: Annotated[str, typer.Argument(help="The experiment (row) whose result to keep.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write (benchmarks/results/..., say).")],
    out: Annotated[Path | None, typer.Option(help="Study directory (default: runs/studies/NAME).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace DEST if it exists.")] = False,
    also: Annotated[list[str] | None, typer.Option(
        help="Another row kept beside it (repeatable): the row an export row exports, say.")] = None,
) -> None:
    """Copy an experiment's finished result into a folder: its model (or export with card and predict.py), its
    stage config and metrics, and the config, epoch log and curves of the run that trained it; no resume state."""
    from slimbench.study import keep_experiment, load_study

    study = load_study(study_file)
    files = keep_experiment(study, out or _study_dir(study.name, False), experiment, dest, replace=replace,
                            also=also or [])
    console.print(f"kept {experiment} in {dest}: {', '.join(p.name for p in files)}", soft_wrap=True)


@study_app.command("merge")
def study_merge(
    study_file: Annotated[Path, typer.Argument(help="Study YAML the directories were run from.")],
    sources: Annotated[list[Path], typer.Argument(help="Other copies of the study directory (a GPU machine's...).")],
    into: Annotated[Path, typer.Option(help="The study directory to merge into (created if absent).")],
    smoke: Annotated[bool, typer.Option(help="Merge smoke-run stages.")] = False,
) -> None:
    """Bring finished stages, logs, curves and rows of other copies of a study into one directory. A stage
    finished in both with different models is a conflict: never overwritten, reported, exit status 1."""
    from slimbench.study import load_study, merge_studies

    study = load_study(study_file)
    result = merge_studies(study, list(sources), into, smoke=smoke)
    for label, items, colour in (("copied", result.copied, "green"), ("replaced an unfinished stage", result.replaced,
                                 "green"), ("already here, same model", result.identical, "dim"),
                                 ("unfinished, copied (study run resumes it)", result.unfinished, "yellow"),
                                 ("refused", result.refused, "yellow"), ("CONFLICT", result.conflicts, "red")):
        for item in items:
            console.print(f"[{colour}]{label}[/]: {item}", soft_wrap=True)
    console.print(f"{len(result.rows)} row(s) in {into / 'results.json'}: {', '.join(result.rows) or 'none'}",
                  soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    from slimbench.study.compare import COLUMNS, cell

    columns = [c for c in COLUMNS if c[0] == "eligible" or any(row.get(c[0]) is not None for row in rows)]
    table = Table(title=_title(title), box=box.SIMPLE_HEAD, caption="dim rows: below the accuracy threshold")
    for _, header, _ in columns:
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=header == "model")
    for row in rows:
        style = None if row.get("eligible") else "dim"
        table.add_row(*[cell(row, key, fmt) for key, _, fmt in columns], style=style)
    console.print(table)


@app.command()
def compare(
    sources: Annotated[list[str], typer.Argument(help="Study directories and/or model files (.pt, exported .onnx or "
                                                 ".tflite); LABEL=FILE names a file in the table and plots.")],
    format_: Annotated[str, typer.Option("--format", help="table, markdown or csv.")] = "table",
    sort: Annotated[str, typer.Option(help="Column to sort by (score, test_acc, params, macs, ...).")] = "score",
    eligible: Annotated[bool, typer.Option(help="Only models at or above the accuracy threshold.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Write accuracy-vs-params/MACs/score plots (PNG, SVG) here.")] = None,
    rule: Annotated[str, typer.Option(help="Score rule for model files: brief, course-macs or a YAML file.")] = "brief",
) -> None:
    """Compare models and studies side by side, with the Pareto front and literature references in plots."""
    from slimbench.study import load_rows, plot_comparison, select, to_csv, to_markdown

    rows = select(load_rows(list(sources), rule), sort, eligible)
    if format_ == "markdown":
        print(to_markdown(rows), end="")
    elif format_ == "csv":
        print(to_csv(rows), end="")
    elif format_ == "table":
        _print_rows(rows, "comparison")
    else:
        raise SlimbenchError(f"format must be table, markdown or csv, got {format_!r}")
    if plots is not None:
        for path in plot_comparison(rows, plots):
            console.print(f"plot: {path}", style="dim")


@app.command("curves")
def curves_(
    sources: Annotated[list[str], typer.Argument(help="Training logs (log.jsonl), directories holding or containing "
                                                 "them (runs, kept models, study stages) or model files; "
                                                 "LABEL=PATH names one.")],
    plot: Annotated[Path | None, typer.Option(help="Also draw the curves, overlaid, into this PNG.")] = None,
) -> None:
    """Validation accuracy by epoch of training runs side by side, each one's selected epoch in bold: is a new run
    tracking the one it should beat?"""
    from slimbench.study.curves import load_curves, plot_curves

    curves = load_curves(list(sources))
    table = Table(title=_title("validation accuracy (%) by epoch"), box=box.SIMPLE_HEAD,
                  caption="bold: the selected epoch (best validation)")
    table.add_column("epoch", justify="right")
    for curve in curves:
        table.add_column(curve.label, justify="right")
    bests = [curve.best for curve in curves]
    for epoch in sorted({epoch for curve in curves for epoch in curve.epochs}):
        cells = []
        for curve, best in zip(curves, bests, strict=True):
            value = curve.at(epoch)
            text = "" if value is None else f"{100 * value:.2f}"
            cells.append(Text(text, style="bold") if best and best[0] == epoch else text)
        table.add_row(str(epoch), *cells)
    table.add_section()
    table.add_row("selected", *["-" if best is None else f"{100 * best[1]:.2f} ({best[0]})" for best in bests])
    console.print(table)
    if plot is not None:
        drawn = plot_curves(curves, plot)
        console.print(f"plot: {drawn}" if drawn else "plot: not drawn, no logged epoch has a validation accuracy",
                      style="dim")


@app.command("report")
def report_(
    study_dir: Annotated[Path, typer.Argument(help="A study directory (with results.json).")],
    out: Annotated[Path | None, typer.Option(help="HTML file (default: STUDY_DIR/report.html).")] = None,
) -> None:
    """Write one self-contained HTML page for a study: tables, plots, curves, model cards."""
    from slimbench.study import write_report

    console.print(f"report: {write_report(study_dir, out)}")


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    import signal
    import warnings

    library_format = warnings.formatwarning

    def one_line_for_ours(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        if category.__module__.startswith("slimbench."):  # ours speak to the user, not to a developer
            return f"warning: {message}\n"
        return library_format(message, category, filename, lineno, line)

    warnings.formatwarning = one_line_for_ours

    from slimbench.train import TrainingInterrupted

    # `kill` and schedulers send SIGTERM (background jobs ignore SIGINT): stop as cleanly as Ctrl-C does,
    # with the epoch saved and the run recorded as interrupted
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except TrainingInterrupted as exc:  # its message says how to continue: whoever drove the trainer wrote it
        from rich.text import Text  # a path in the message is text, not markup

        Console(stderr=True).print(Text(str(exc), style="yellow"), soft_wrap=True)  # one line, never wrapped
        sys.exit(130)
    except SlimbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # usage errors (click's, or the copy newer typer vendors) arrive here
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


if __name__ == "__main__":
    main()
