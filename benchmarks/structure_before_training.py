"""Structured pruning criteria compared before any fine-tuning: at about the same share of the score removed,
the structure each criterion keeps and the validation accuracy right after pruning, batch-norm statistics
re-estimated on training images (BENCHMARKS section 35). A cheap first look, not a verdict: fine-tuning
closes much of a gap.

    SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/structure_before_training.py \
        benchmarks/results/resnet20-strong/model.pt --sparsity 0.7

``--sparsity`` is the share of the weights that unstructured pruning will zero later: it divides the parameter
term of the planned score (and the score-aware criteria weigh channels by that planned score).
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from torch import nn

from slimbench.artifact import load_model
from slimbench.compress.calibration import calibration_indices, dataset_for, validation_images
from slimbench.compress.prune import _calibration
from slimbench.compress.structured import measure_target, prune_structured
from slimbench.data.augment import normalize
from slimbench.measure import count_model
from slimbench.models.norms import update_batch_norms
from slimbench.sparsity.config import PruneConfig

SHAPE = (3, 32, 32)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, recalibrate: torch.Tensor | None) -> float:
    model = copy.deepcopy(model)
    if recalibrate is not None:  # pruning leaves the running statistics of the channels that stay out of date
        update_batch_norms(model, (normalize(recalibrate[start:start + 128], channels_last=False)
                                   for start in range(0, len(recalibrate), 128)))
    model.eval()
    with torch.no_grad():
        return float((model(normalize(images, channels_last=False)).argmax(1) == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--ratio", type=float, default=0.3, help="share of the parameters global L1 removes")
    parser.add_argument("--sparsity", type=float, default=0.0, help="unstructured sparsity planned after it")
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=["taylor", "taylor_per_score"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)

    model, artifact = load_model(args.checkpoint)
    model.eval()
    dataset = dataset_for(artifact)
    held_out = validation_images(dataset, artifact)
    if held_out is None:
        raise SystemExit("this checkpoint records no validation split")
    images, labels = held_out[0][:args.val_images], held_out[1][:args.val_images]
    recalibrate = dataset.train_x[calibration_indices(dataset, artifact, 2048, seed=1)]
    norms = (5.6e6 / (1 - args.sparsity), 8.3e8)  # the brief's dividers, the parameter term thinned as planned

    def planned(m: nn.Module) -> float:
        counts = count_model(m, SHAPE)
        return counts.params / norms[0] + counts.macs / norms[1]

    parent = planned(model)
    print(f"parent: {_accuracy(model, images, labels, None):.2%} on {len(labels)} validation images")
    baseline = PruneConfig(ratio=args.ratio, target="params", scope="global", round_to=args.round_to)
    configs = [baseline]
    first = prune_structured(model, baseline, args.ratio, measure_target(model, baseline, SHAPE)).model
    goal = 1 - planned(first) / parent  # the others remove as much of the planned score as global L1 did
    configs += [PruneConfig(method=method, ratio=goal, target="score", score_norms=norms, scope="global",
                            round_to=args.round_to) for method in args.methods]
    print("| criterion | target | params | MACs | planned score removed | val, pruned, BN re-estimated | channels |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for config in configs:
        calibrate = _calibration(dataset, artifact, config)
        pruned = prune_structured(copy.deepcopy(model), config, config.ratio,
                                  measure_target(model, config, SHAPE), calibrate=calibrate).model
        counts = count_model(pruned, SHAPE)
        channels = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
        print(f"| {config.method} | {config.target} {config.ratio:.3f} | {counts.params:,} | {counts.macs:,} | "
              f"{1 - planned(pruned) / parent:.3f} | {_accuracy(pruned, images, labels, recalibrate):.2%} | "
              f"{channels} |", flush=True)


if __name__ == "__main__":
    main()
