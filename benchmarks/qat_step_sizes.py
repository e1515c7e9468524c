"""How a QAT model's step sizes train: each input's step after QAT against its step at the start, the size of each
kind of parameter's gradient against its value at the start (on a few training batches), and the trained model's
validation accuracy as batch norm's moving averages take a few more training batches (as each step of training
does), and with its statistics re-estimated on augmented training images instead (BENCHMARKS section 36).

    SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/qat_step_sizes.py \
        RUN/stages/quantize-KEY/qat/init.pt benchmarks/results/frontier-strongkd/s2-sparse40-w3a3-e40-gradual70/model.pt

The first checkpoint is the QAT run's starting model (``qat/init.pt`` of its stage), the second the trained one.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from slimbench.artifact import load_model
from slimbench.compress.calibration import calibration_indices, dataset_for, validation_images
from slimbench.data.augment import normalize, random_crop, random_flip
from slimbench.measure.accuracy import evaluate
from slimbench.models.lowbit import QUANTIZER_MARK
from slimbench.models.norms import batch_norms, update_batch_norms


def _kind(name: str, parameter: torch.Tensor) -> str:
    if QUANTIZER_MARK in name:
        return "input steps" if "input_quant" in name else "weight steps"
    return "weights" if parameter.ndim > 1 else "norms and biases"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", help="the QAT run's starting model (qat/init.pt)")
    parser.add_argument("trained", help="the trained QAT model")
    parser.add_argument("--batches", type=int, default=5, help="training batches the gradients are measured on")
    parser.add_argument("--bn-images", type=int, default=10_000, help="augmented training images for batch norm")
    parser.add_argument("--drift-batches", type=int, default=5, help="training batches the moving averages take")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    start, _ = load_model(args.start)
    model, artifact = load_model(args.trained)
    data = dataset_for(artifact, None)

    print("input step after QAT / at its start, per low-bit layer:")
    begun = dict(start.named_parameters())
    for name, value in model.named_parameters():
        if QUANTIZER_MARK in name and "input_quant" in name:
            print(f"  {name.split('.input_quant')[0]:24} {float(value) / float(begun[name]):.3f}")

    # at the start: a trained artifact's weights sit on their grid, where a weight step's gradient vanishes; and a
    # training-mode pass moves batch norm's statistics, which the accuracies below must not see
    picks = calibration_indices(data, artifact, 128 * args.batches, seed=0)
    ratios: dict[str, list[float]] = {}
    start.train()
    for batch in picks.split(128):
        start.zero_grad()
        x = normalize(data.train_x[batch], channels_last=True)
        F.cross_entropy(start(x), data.train_y[batch], label_smoothing=0.1).backward()
        for name, parameter in start.named_parameters():
            if parameter.grad is not None:
                ratio = float(parameter.grad.norm() / parameter.detach().norm().clamp_min(1e-12))
                ratios.setdefault(_kind(name, parameter), []).append(ratio)
    print(f"|gradient| / |value| at the start, on {args.batches} training batches of 128 (median, max):")
    for kind, values in ratios.items():
        print(f"  {kind:18} {statistics.median(values):.1e}  {max(values):.1e}")

    val_x, val_y = validation_images(data, artifact)

    def accuracies() -> str:
        val = evaluate(model, val_x, val_y, data.num_classes).accuracy
        test = evaluate(model, data.test_x, data.test_y, data.num_classes).accuracy
        return f"val {100 * val:.2f}%, test {100 * test:.2f}%"

    print(f"as stored: {accuracies()}")
    generator = torch.Generator().manual_seed(0)

    def augmented(picks: torch.Tensor) -> Iterator[torch.Tensor]:
        for batch in picks.split(128):
            images = random_flip(random_crop(data.train_x[batch], 4, generator), generator)
            yield normalize(images, channels_last=True)

    drift = []
    for batch in calibration_indices(data, artifact, 128 * args.drift_batches, seed=2).split(128):
        update_batch_norms(model, augmented(batch), restart=False)  # as a training step moves the averages
        drift.append(100 * evaluate(model, val_x, val_y, data.num_classes).accuracy)
    print(f"validation after each of {args.drift_batches} more training batches (moving averages, momentum "
          f"{batch_norms(model)[0].momentum}): " + ", ".join(f"{v:.2f}%" for v in drift))
    update_batch_norms(model, augmented(calibration_indices(data, artifact, args.bn_images, seed=1)))
    print(f"batch norm re-estimated on {args.bn_images:,} augmented training images: {accuracies()}")


if __name__ == "__main__":
    main()
