"""Compression stages: pruning (structured with Torch-Pruning, unstructured with torch.nn.utils.prune) and
quantization (fp16/bf16 artifacts, int8 with ONNX Runtime static quantization)."""

from slimbench.compress.prune import PruneResult, prune, prune_model
from slimbench.compress.quantize import QuantizeConfig, QuantizeResult, quantize
from slimbench.sparsity.config import PruneConfig

__all__ = ["PruneConfig", "PruneResult", "QuantizeConfig", "QuantizeResult", "prune", "prune_model", "quantize"]
