"""Low-bit layers for quantization-aware training, built with Brevitas from a recipe held as data.

A QAT model is the float architecture with each selected ``Conv2d``/``Linear`` replaced by Brevitas's
``QuantConv2d``/``QuantLinear`` (subclasses of the float layers, so counting and pruning code still sees
convolutions):

- weights: symmetric, narrow range (2^b - 1 levels), one step size per output channel, a learned parameter
  initialised from max|w| (LSQ-style learned step size rather than a fixed max statistic);
- inputs: one step size per tensor, learned after initialisation from activation statistics, unsigned
  when the layer never sees negative inputs (after ReLU), signed otherwise (the image, a residual sum).

Quantizing each multiply's *inputs* rather than each activation function is what makes ``qa`` mean the
same thing in every architecture: the bits of the operands of the MACs that ``f`` counts. The recipe is
``{layer name: {"weight_bits", "activation_bits", "activation_signed"}}``; ``build_from_artifact``
calls :func:`apply_lowbit` with it, so a QAT artifact is rebuilt exactly, weights and step sizes included.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from slimbench.errors import CheckpointError
from slimbench.models.structure import replace_module

QUANTIZER_MARK = "_quant."  # parameter names of low-bit layers' step sizes (Brevitas): not weights


@functools.cache
def _quantizers() -> dict[str, Any]:
    with warnings.catch_warnings():  # Brevitas warns about optional CUDA kernels it does not need here
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
        from brevitas.inject.enum import ScalingImplType
        from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Uint8ActPerTensorFloat

    class LearnedStepWeightPerChannel(Int8WeightPerChannelFloat):
        scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS

    # Brevitas's default activation quantizers already learn their step size after collecting statistics;
    # a shorter collection lets short fine-tunes and explicit calibration settle it.
    class LearnedStepUnsignedAct(Uint8ActPerTensorFloat):
        collect_stats_steps = 32

    class LearnedStepSignedAct(Int8ActPerTensorFloat):
        collect_stats_steps = 32

    return {"qnn": qnn, "weight": LearnedStepWeightPerChannel, "unsigned": LearnedStepUnsignedAct,
            "signed": LearnedStepSignedAct}


def _lowbit_layer(layer: nn.Module, bits: dict[str, Any]) -> nn.Module:
    q = _quantizers()
    qnn = q["qnn"]
    common = {
        "bias": layer.bias is not None, "weight_quant": q["weight"], "weight_bit_width": int(bits["weight_bits"]),
        "input_quant": q["signed" if bits.get("activation_signed", True) else "unsigned"],
        "input_bit_width": int(bits["activation_bits"]), "return_quant_tensor": False,
    }
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise CheckpointError(f"low-bit conv supports zero padding only, not {layer.padding_mode!r}")
        new = qnn.QuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                              layer.dilation, layer.groups, **common)
    elif isinstance(layer, nn.Linear):
        new = qnn.QuantLinear(layer.in_features, layer.out_features, **common)
    else:
        raise CheckpointError(f"cannot quantize a {type(layer).__name__} layer")
    new.to(layer.weight.device)
    new.load_state_dict(layer.state_dict(), strict=False)  # weight and bias; step sizes come later
    return new.train(layer.training)


def is_lowbit(module: nn.Module) -> bool:
    """A Brevitas layer with quantized weights and inputs (not one of its internal quantizer modules)."""
    return isinstance(module, nn.Conv2d | nn.Linear) and type(module).__module__.startswith("brevitas")


@torch.no_grad()
def snap_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with every low-bit weight replaced by its quantized value (one of its grid's levels)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if is_lowbit(module):
            state[f"{name}.weight"] = module.quant_weight().value.detach().clone()
    return state


def load_state_in_place(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state)`` after which every parameter is the same object, on the same device.

    Loading a state into a Brevitas layer rebuilds its quantizers: their learned step sizes come back as new
    Parameter objects, on the state's device. An optimiser that holds the old ones then no longer trains the
    step sizes (silently, on every device), and a model on a GPU holds CPU tensors. So the loaded values are
    copied into the parameters that were there, and the rebuilt quantizers' buffers go back to the model's device.
    """
    before = dict(model.named_parameters())
    device = next(iter(before.values())).device if before else None
    model.load_state_dict(state)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, loaded in list(model.named_parameters()):
            kept = before.get(name)
            if kept is None or kept is loaded:
                continue
            kept.copy_(loaded)
            owner, _, leaf = name.rpartition(".")
            modules[owner]._parameters[leaf] = kept
    if device is not None:
        model.to(device)


def apply_lowbit(model: nn.Module, layers: dict[str, dict[str, Any]], source: str = "artifact") -> nn.Module:
    """Replace each named layer by its low-bit version, in place; returns ``model``."""
    modules = dict(model.named_modules())
    for name, bits in layers.items():
        layer = modules.get(name)
        if layer is None:
            raise CheckpointError(f"{source}: quantization recipe names layer {name!r}, which the model lacks")
        replace_module(model, name, _lowbit_layer(layer, bits), modules)
    return model


def lowbit_summary(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Bits of every low-bit layer of a built model, read from the layers themselves."""
    summary = {}
    for name, module in model.named_modules():
        if is_lowbit(module):
            summary[name] = {"weight_bits": int(module.weight_quant.bit_width()),
                             "activation_bits": int(module.input_quant.bit_width())
                             if module.input_quant.is_quant_enabled else 32}
    return summary
