"""Re-evaluate a saved model on a split, with a confusion-matrix picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimbench.artifact import load_model, training_data
from slimbench.data import load_dataset, training_split
from slimbench.errors import SlimbenchError
from slimbench.measure.accuracy import evaluate, resolve_device


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    data_dir: str | Path | None = None,
    confusion_png: str | Path | None = None,
    device: str = "auto",
    precision: str = "stored",
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and confusion matrix of an artifact on ``test`` or ``val``.

    ``precision`` other than ``stored`` (bf16/fp16 autocast of a float model) is a speed option: the report
    says so under ``precision``, and it is not the model's accuracy."""
    if split not in ("test", "val"):
        raise SlimbenchError(f"split must be 'test' or 'val', got {split!r}")
    model, artifact = load_model(checkpoint)
    data_cfg = training_data(artifact.lineage)
    name = data_cfg.get("name", "cifar10")
    dataset = load_dataset(name, data_dir if data_dir is not None else data_cfg.get("dir"))
    if dataset.num_classes != artifact.spec.get("num_classes"):
        raise SlimbenchError(
            f"{checkpoint} predicts {artifact.spec.get('num_classes')} classes, {dataset.name} has {dataset.num_classes}"
        )
    if split == "test":
        images, labels = dataset.test_x, dataset.test_y
    else:
        splits = training_split(dataset, data_cfg)
        if len(splits.val_idx) == 0:
            raise SlimbenchError(f"{checkpoint} was trained without a validation split")
        images, labels = dataset.train_x[splits.val_idx], dataset.train_y[splits.val_idx]
    model = model.to(resolve_device(device))
    result = evaluate(model, images, labels, dataset.num_classes, precision=precision)
    png = Path(confusion_png) if confusion_png else Path(checkpoint).with_name(f"{Path(checkpoint).stem}_confusion_{split}.png")
    plot_confusion(result.confusion, dataset.classes, png, title=f"{Path(checkpoint).name} on {dataset.name} {split}: "
                   f"{100 * result.accuracy:.2f}%" + ("" if precision == "stored" else f" ({precision} autocast)"))
    return {
        "checkpoint": str(checkpoint), "dataset": dataset.name, "split": split, "count": result.count,
        "accuracy": result.accuracy, "correct": round(result.accuracy * result.count),
        "precision": stored_precision(artifact) if precision == "stored" else f"{precision} autocast (not the stored precision)",
        "loss": result.loss, "classes": list(dataset.classes),
        "per_class": result.per_class, "confusion": result.confusion, "confusion_png": str(png),
    }


def stored_precision(artifact: Any) -> str:
    """How an artifact computes when evaluated as stored: ``fp32``, ``fp16``/``bf16``, or its QAT bits."""
    quant = artifact.quant or {}
    mode = quant.get("mode")
    if mode in ("fp16", "bf16"):
        return f"{mode} (stored weights, layer outputs rounded to {mode})"
    if mode == "qat":
        bits = [quant.get(k) for k in ("weight_bits", "activation_bits")]  # averages over layers: 3.23, not 3.2317...
        w, a = (f"{round(b, 2):g}" if isinstance(b, float) else b for b in bits)
        return f"w{w}a{a} (its quantizers, fp32 arithmetic)"
    return "fp32"


def plot_confusion(confusion: list[list[int]], classes: list[str] | tuple[str, ...], path: str | Path,
                   title: str = "") -> None:
    """Row-normalised confusion matrix (true class down, predicted across), counts in each cell."""
    import matplotlib.pyplot as plt
    import numpy as np

    from slimbench.plotting import save_figure  # sets the headless backend first

    counts = np.asarray(confusion)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(classes)
    size = max(5.0, 0.55 * n)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    save_figure(fig, path)
