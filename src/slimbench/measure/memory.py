"""What a microcontroller asks first: flash for the weights, and peak RAM for batch-1 inference.

Peak RAM follows the graph in execution order (torch.fx): a tensor is alive from the operation that makes it
to the last one that reads it, so a residual branch keeps its input alive until the addition. At each operation
the alive tensors (its inputs and its output included) are summed at the activation width; the largest sum is
the peak. Batch norm and activations whose input nothing else reads are fused into the layer before them (or
run in place), as deployment runtimes do, and identities cost nothing: these make no tensor of their own. Flash
counts each convolution and linear layer's weights at their stored bits, plus a 32-bit bias and a 32-bit scale
per output channel (batch norm folded into the layer, as deployment runtimes store it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimbench.errors import SlimbenchError


@dataclass
class LayerMemory:
    name: str  # the graph node (a module's name, or the function it calls)
    output_bytes: int
    alive_bytes: int  # every tensor alive while this operation runs


@dataclass
class MemoryReport:
    peak_ram_bytes: int
    peak_at: str
    activation_bits: float
    flash_bytes: int
    weight_bits: float  # of the convolution and linear weights, weighted by their counts
    layers: list[LayerMemory] = field(default_factory=list)


IN_PLACE_MODULES = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
IN_PLACE_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6}


def _bytes(node: fx.Node, bits: float) -> int:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return 0
    return int(torch.Size(meta.shape).numel() * bits / 8 + 0.999)


def peak_ram(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32),
             activation_bits: float = 32) -> tuple[int, str, list[LayerMemory]]:
    """Peak bytes of activations alive at once for one image, where it happens, and the per-operation totals."""
    try:
        graph = fx.symbolic_trace(model.eval())
    except Exception as exc:
        raise SlimbenchError(f"peak RAM needs a traceable model (torch.fx): {type(exc).__name__}: {exc}") from None
    first = next(model.parameters(), None)
    example = torch.zeros(1, *input_shape, dtype=first.dtype if first is not None else torch.float32)
    with torch.no_grad():
        ShapeProp(graph).propagate(example)
    nodes = list(graph.graph.nodes)
    modules = dict(graph.named_modules())
    # Deployment runtimes fuse batch norm and activations into the layer before them (or run them in place), and
    # identities cost nothing: such an operation makes no tensor of its own when nothing else reads its input.
    alias: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        source = node.all_input_nodes[0] if len(node.all_input_nodes) == 1 else None
        if source is None:
            continue
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        identity = isinstance(module, nn.Identity)
        in_place = isinstance(module, IN_PLACE_MODULES) or (node.op == "call_function" and node.target in IN_PLACE_FUNCTIONS)
        if identity or (in_place and len(source.users) == 1):
            alias[node] = alias.get(source, source)
    last_use = {node: index for index, node in enumerate(nodes)}
    for index, node in enumerate(nodes):
        for used in node.all_input_nodes:
            root = alias.get(used, used)
            last_use[root] = max(last_use[root], index)
    alive: dict[fx.Node, int] = {}
    peak, where, layers = 0, "input", []
    for index, node in enumerate(nodes):
        if node.op == "output":
            break
        if node.op == "get_attr":
            continue
        size = 0 if node in alias else _bytes(node, activation_bits)
        if node not in alias:
            alive[node] = size
        total = sum(alive.values())
        if node.op != "placeholder":
            name = node.target if node.op == "call_module" else getattr(node.target, "__name__", str(node.target))
            layers.append(LayerMemory(str(name), size, total))
        if total > peak:
            peak, where = total, layers[-1].name if layers else "input"
        for done in [n for n in alive if last_use[n] <= index and n is not node]:
            del alive[done]  # freed once its last reader has run
    return peak, where, layers


def flash_bytes(model: nn.Module, weight_bits: dict[str, float] | float = 32) -> int:
    """Weights of every convolution and linear layer at their bits, plus a 32-bit bias and scale per output channel."""
    total = 0.0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv1d | nn.Linear):
            bits = weight_bits.get(name, 32) if isinstance(weight_bits, dict) else weight_bits
            out_channels = module.weight.shape[0]
            total += module.weight.numel() * bits / 8 + out_channels * 8
    return int(total + 0.999)


def float_twin(spec: dict, structure: dict | None) -> nn.Module:
    """The float model of an artifact's architecture and pruned structure: low-bit (Brevitas) layers do not trace
    with torch.fx, and their float twin has the same shapes, which is all peak RAM and flash need."""
    from slimbench.models import build_model
    from slimbench.models.structure import apply_structure

    twin = build_model(spec)
    if structure:
        apply_structure(twin, structure)
    return twin


def stored_bits(quant: dict | None) -> tuple[dict[str, float] | float, float]:
    """(weight bits, activation bits) a model is stored and run at: a QAT model's own per-layer weight bits and
    its widest layer input (an upper bound for its narrower layers); else its precision's, else 32."""
    quant = quant or {}
    if quant.get("mode") == "qat":
        layers = quant.get("layers") or {}
        return ({name: float(b["weight_bits"]) for name, b in layers.items()},
                float(max((b["activation_bits"] for b in layers.values()), default=32)))
    return float(quant.get("weight_bits", 32)), float(quant.get("activation_bits", 32))


def memory_report(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32), activation_bits: float = 32,
                  weight_bits: dict[str, float] | float = 32) -> MemoryReport:
    peak, where, layers = peak_ram(model, input_shape, activation_bits)
    weights = {name: m.weight.numel() for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)}
    bits = {name: (weight_bits.get(name, 32) if isinstance(weight_bits, dict) else weight_bits) for name in weights}
    mean_bits = sum(bits[n] * count for n, count in weights.items()) / max(sum(weights.values()), 1)
    return MemoryReport(peak, where, activation_bits, flash_bytes(model, weight_bits), float(mean_bits), layers)
