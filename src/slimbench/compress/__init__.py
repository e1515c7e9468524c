"""Compression stages: pruning (structured with Torch-Pruning, unstructured with torch.nn.utils.prune)."""

from slimbench.compress.config import PruneConfig
from slimbench.compress.prune import PruneResult, prune, prune_model

__all__ = ["PruneConfig", "PruneResult", "prune", "prune_model"]
