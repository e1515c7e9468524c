"""Whole-model bit plans on a float artifact before any training: each plan's score (brief's rule) and the
accuracy right after calibration on the first validation images, with the weight steps started at max|w| and
at the least rounding error (BENCHMARKS section 27), and with the input steps then moved to theirs too (section 36).

    SLIMBENCH_DATA=../shared/data/cifar10 python benchmarks/bit_plans_before_training.py \
        benchmarks/results/frontier-prune30-sparse40/sparse40/model.pt

``--sparsity 0.7`` first zeroes the smallest 70% of the weights of every layer but the first and the classifier, by
magnitude, where a gradual pruning ramp to 70% (``scope: layer, exclude: [conv1]``) ends, with the trainer's own
selection and ranking: the scores are then those that training to that sparsity will reach (BENCHMARKS section 40),
the accuracies those of one-shot pruning without training.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch

from slimbench.artifact import load_model
from slimbench.compress.calibration import calibration_indices, dataset_for, validation_images
from slimbench.compress.qat import calibrate_activations, plan_bits
from slimbench.compress.quantize import QuantizeConfig
from slimbench.measure.accuracy import evaluate
from slimbench.models.lowbit import apply_lowbit
from slimbench.score import PRESETS
from slimbench.score.plan import score_of_plan
from slimbench.sparsity import GradualPruningConfig
from slimbench.sparsity.unstructured import prune_where_ramp_ends

W3A3 = {"weight_bits": 3, "activation_bits": 3}
# `slimbench sensitivity` on the 50% structure (BENCHMARKS section 48): layer 3's last block and the second
# convolutions of layer 2's last two blocks barely feel 3 bits alone, layer 3's first three convolutions do.
BY_SENSITIVITY = {"layer2.1.conv2": W3A3, "layer2.2.conv2": W3A3, "layer3.0.shortcut.0": W3A3, "layer3.2.conv1": W3A3,
                  "layer3.2.conv2": {"weight_bits": 2, "activation_bits": 2}}
# Section 49: the same table ranked by drop per share of MACs; the second convolutions of layer 1 and layer2.0.conv2
# carry 17% of the MACs and lose 0.1-0.5 at w3a3 alone, so they go to 3 bits and the sparsity comes down instead.
BY_SENSITIVITY_PER_MAC = {**BY_SENSITIVITY, "layer3.1.conv2": W3A3, "layer2.0.conv2": W3A3,
                          **{f"layer1.{block}.conv2": W3A3 for block in range(3)}}
PLANS = {  # name -> (weight bits, activation bits, layer_bits); first and last layer at 8 bits in all
    "w4a4": (4, 4, {}),
    "w3a3 everywhere": (3, 3, {}),
    "layer 1 w4a4, layers 2-3 w3a3": (4, 4, {"layer2.*": W3A3, "layer3.*": W3A3}),
    "layer 3 w3a3, layer 2 w3a4, layer 1 w4a4": (4, 4, {"layer3.*": W3A3, "layer2.*": {"weight_bits": 3}}),
    "layers 1-2 w4a4, layer 3 w3a3": (4, 4, {"layer3.*": W3A3}),
    "layer 2 w4a4, layers 1 and 3 w3a3": (3, 3, {"layer2.*": {"weight_bits": 4, "activation_bits": 4}}),
    "w2a4 everywhere": (2, 4, {}),
    "w4a4, layer 3 at 2-bit weights": (4, 4, {"layer3.*": {"weight_bits": 2}}),
    "by sensitivity, layer 3.1.conv2 at w3a3": (4, 4, {**BY_SENSITIVITY, "layer3.1.conv2": W3A3}),
    "by sensitivity (section 48)": (4, 4, BY_SENSITIVITY),
    # the op term is three quarters of the score: the layers that are cheap at 3 bits *per MAC* (section 49)
    "by sensitivity per MAC (section 49)": (4, 4, BY_SENSITIVITY_PER_MAC),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=2000, help="validation images each plan is evaluated on")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="share of each layer's weights (all but the first layer) zeroed by magnitude first")
    parser.add_argument("--scope", choices=["layer", "global"], default="layer",
                        help="--sparsity per layer (the frontier's ramps) or one threshold over all of them")
    parser.add_argument("--method", default="l1", help="the unstructured criterion that ranks the weights (l1, lamp)")
    parser.add_argument("--plan", action="append", choices=list(PLANS), help="only these plans (repeat it); default all")
    parser.add_argument("--float-only", action="store_true", help="only the float model's accuracy after --sparsity")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    model, artifact = load_model(args.checkpoint)
    if args.sparsity:  # the selection and ranking the trainer's gradual pruning uses at its last step
        prune_where_ramp_ends(model, GradualPruningConfig(final_sparsity=args.sparsity, scope=args.scope,
                                                          method=args.method, exclude=["conv1"]))
    data = dataset_for(artifact, None)
    val_x, val_y = (t[:args.images] for t in validation_images(data, artifact))
    calibration = data.train_x[calibration_indices(data, artifact, 256, 0)]
    print(f"float: {100 * evaluate(model.eval(), val_x, val_y, data.num_classes).accuracy:.2f}% "
          f"on {len(val_x):,} validation images")
    print(f"{'plan':44} {'score':>7} {'max|w|':>8} {'mse':>8} {'mse+act':>8}")
    chosen = [] if args.float_only else args.plan or list(PLANS)
    for name in chosen:
        weight_bits, activation_bits, layer_bits = PLANS[name]
        config = QuantizeConfig(mode="qat", weight_bits=weight_bits, activation_bits=activation_bits,
                                first_last_bits=8, layer_bits=layer_bits)
        plan = plan_bits(model, config, calibration[:64])
        score = score_of_plan(model, artifact.lineage, plan, PRESETS["brief"], tuple(calibration.shape[1:]))
        accuracy = {}
        for label, weights, inputs in (("max", "max", "percentile"), ("mse", "mse", "percentile"),
                                       ("mse+act", "mse", "mse")):
            trial = apply_lowbit(copy.deepcopy(model), plan, args.checkpoint)
            torch.manual_seed(0)
            calibrate_activations(trial, calibration, weight_step_init=weights, activation_step_init=inputs)
            accuracy[label] = evaluate(trial.eval(), val_x, val_y, data.num_classes).accuracy
        print(f"{name:44} {score:8.5f} " + " ".join(f"{100 * accuracy[k]:7.2f}%" for k in accuracy), flush=True)


if __name__ == "__main__":
    main()
