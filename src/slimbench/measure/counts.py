"""Parameters, multiply-accumulates and storage size, counted on the real forward pass.

Counting rule ``conv-linear-macs`` (documented in the README): one MAC per multiply-add of a convolution
(``out_elements x in_channels/groups x kh x kw``) or a linear layer (``out_features x in_features`` per row),
per image, at the real input size, found by hooks on the layers the forward actually runs (so pruned or
unusual architectures are counted as they are). Batch norm, activations, additions and pooling are not
counted (they are a few percent of a CNN's arithmetic and fold or fuse at deployment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimbench.models import weight_parameters

COUNTING_RULE = "conv-linear-macs"


@dataclass
class LayerCount:
    name: str
    kind: str
    output_shape: list[int]
    params: int
    nonzero_params: int
    macs: int


@dataclass
class ModelCounts:
    input_shape: list[int]
    params: int
    trainable_params: int
    nonzero_params: int
    macs: int
    layers: list[LayerCount] = field(default_factory=list)
    rule: str = COUNTING_RULE


def _layer_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        rows = output.numel() // output.shape[-1] // output.shape[0]
        return rows * module.in_features * module.out_features
    return 0


@torch.no_grad()
def count_model(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> ModelCounts:
    """Count parameters and per-image MACs by running one image through ``model`` (left in its mode)."""
    layers: list[LayerCount] = []
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            params = sum(p.numel() for p in module.parameters(recurse=False))
            nonzero = sum(int(torch.count_nonzero(p)) for p in module.parameters(recurse=False))
            layers.append(LayerCount(name=name, kind=type(module).__name__, output_shape=list(output.shape[1:]),
                                     params=params, nonzero_params=nonzero, macs=_layer_macs(module, inputs, output)))
        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters())
        model(torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype))  # fp16/bf16 models too
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    weights = [p for _, p in weight_parameters(model)]
    return ModelCounts(
        input_shape=list(input_shape),
        params=sum(p.numel() for p in weights),
        trainable_params=sum(p.numel() for p in weights if p.requires_grad),
        nonzero_params=sum(int(torch.count_nonzero(p)) for p in weights),
        macs=sum(layer.macs for layer in layers),
        layers=layers,
    )


def storage_bytes(params: int, bits: float) -> int:
    """Bytes to store ``params`` values at ``bits`` each, densely packed."""
    return int(-(-params * bits // 8))


def sparse_storage_bytes(params: int, nonzero: int, bits: float) -> int:
    """Bytes for a bitmask (one bit per weight) plus the non-zero values at ``bits`` each.

    It pays once more than 1/bits of the weights are zero (over 1/8 at 8 bits, over 1/32 at 32 bits).
    """
    return storage_bytes(params, 1) + storage_bytes(nonzero, bits)


MICRONET_RULE = "micronet-ops"


@dataclass
class OperationCount:
    """MicroNet-style operations, in 32-bit-operation equivalents (see :func:`count_micronet_ops`)."""

    multiplies: float  # conv/linear multiplies, each weighted by max(weight bits, input bits) / 32
    additions: float  # their accumulations, at 32 bits
    batchnorm: float  # 3 operations per output element of an unfolded batch norm, at 32 bits
    total: float
    rule: str = MICRONET_RULE


@torch.no_grad()
def count_micronet_ops(model: nn.Module, layer_bits: dict[str, tuple[float, float]] | None = None,
                       default_bits: tuple[float, float] = (32, 32),
                       input_shape: tuple[int, ...] = (3, 32, 32)) -> OperationCount:
    """Operations as the MicroNet challenge (NeurIPS 2019) counts them, per image.

    Each multiply-accumulate of a convolution or linear layer is one multiply, costing max(weight bits,
    input bits)/32 of a 32-bit operation, and one addition at 32 bits (accumulators stay wide); multiplies by
    weights that unstructured pruning set to zero are skipped (both the multiply and its addition). Batch
    norm costs 3 operations per output element. Residual additions, activations and pooling are left out
    (under 1% of a CIFAR ResNet's count). ResNet-18 (CIFAR, 555.4M MACs) at 16 bits gives 8.3e8, the
    normaliser of the course's score.
    """
    layer_bits = layer_bits or {}
    multiplies = additions = batchnorm = 0.0
    handles = []

    def conv_or_linear(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            nonlocal multiplies, additions
            density = float(torch.count_nonzero(module.weight)) / max(1, module.weight.numel())
            macs = _layer_macs(module, inputs, output) * density
            w_bits, a_bits = layer_bits.get(name, default_bits)
            multiplies += macs * max(w_bits, a_bits) / 32
            additions += macs
        return record

    def norm(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal batchnorm
        batchnorm += 3 * output.numel() / output.shape[0]

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(conv_or_linear(name)))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_hook(norm))
    was_training = model.training
    model.eval()
    try:
        first = next(model.parameters())
        model(torch.zeros(1, *input_shape, device=first.device, dtype=first.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return OperationCount(multiplies=multiplies, additions=additions, batchnorm=batchnorm,
                          total=multiplies + additions + batchnorm)


def layer_bits_of(quant: dict[str, Any]) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Per-layer (weight, input) bits of a model's quantization recipe, and the default for other layers."""
    if quant.get("mode") == "qat":
        layers = {name: (float(b["weight_bits"]), float(b["activation_bits"]))
                  for name, b in (quant.get("layers") or {}).items()}
        return layers, (32.0, 32.0)
    return {}, (float(quant.get("weight_bits", 32)), float(quant.get("activation_bits", 32)))


def scored_nonzero(model: nn.Module, quant: dict[str, Any] | None, lineage: list[dict[str, Any]],
                   masks: dict[str, torch.Tensor] | None = None) -> int:
    """Non-zero parameters as the score's w counts them.

    A low-bit grid puts small weights exactly on its zero level: those are values of the grid, stored at b bits
    like any other, not removed weights. So for QAT models only the weights that pruning removed and its masks
    held at zero are left out (the artifact's ``masks``; for one from before masks were recorded, the count
    the last pruning step recorded); for other models every zero is.
    """
    weights = weight_parameters(model)
    if (quant or {}).get("mode") != "qat":
        return sum(int(torch.count_nonzero(p)) for _, p in weights)
    total = sum(p.numel() for _, p in weights)
    if masks:
        return total - sum(int((~mask).sum()) for mask in masks.values())
    # Inside a pruned tensor, the grid puts more small weights on zero during QAT: those are stored levels, not
    # pruned weights (counting them gave 2,067 weights too few on the 50%-pruned, 30%-sparse w4a4).
    steps = [step.get("metrics") or {} for step in lineage if step.get("stage") == "prune"]
    if not steps or "nonzero_after" not in steps[-1]:
        return total
    forced = int(steps[-1]["params_after"]) - int(steps[-1]["nonzero_after"])
    return total - max(forced, 0)


def scored_weight_bits(model: nn.Module, quant: dict[str, Any] | None, lineage: list[dict[str, Any]],
                       masks: dict[str, torch.Tensor] | None = None) -> float:
    """The score's qw: the mean bits of the weights its w counts, each at its own layer's width.

    The score multiplies qw by w, so qw must average over the weights as stored. A quantization recipe records
    its bits averaged over every parameter of the dense tensors; once pruning has removed most weights of the
    low-bit layers, the dense, wider tensors (first and last layer at 8 bits, biases and batch norm at 32) hold a
    larger share of what is stored, and that average understates the bits (0.0038 against 0.0040 on
    BENCHMARKS 47's best model). Uniform recipes (fp16, int8) store every weight at one width: their bits stand.
    """
    quant = quant or {}
    plan = quant.get("layers") if quant.get("mode") == "qat" else None
    if not plan:
        return float(quant.get("weight_bits", 32))
    # without recorded masks, the zeros of the tensors pruning named stand for the pruned weights
    sparse = {name for step in lineage if step.get("stage") == "prune"
              for name in (step.get("metrics") or {}).get("sparse_params", [])}
    stored_total = bit_total = 0.0
    for name, tensor in weight_parameters(model):
        layer, _, kind = name.rpartition(".")
        bits = float(plan.get(layer, {}).get("weight_bits", 32)) if kind == "weight" else 32.0
        if masks and name in masks:
            stored = int(masks[name].sum())
        elif not masks and name in sparse:
            stored = int(torch.count_nonzero(tensor))
        else:
            stored = tensor.numel()
        stored_total += stored
        bit_total += stored * bits
    return bit_total / stored_total if stored_total else float(quant.get("weight_bits", 32))
