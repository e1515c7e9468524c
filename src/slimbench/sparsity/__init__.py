"""Sparsity primitives: pruning configs, layer selection and unstructured masks. Below the trainer (which ramps
sparsity up while training and keeps masks) and below the compress stages (which prune and fine-tune)."""

from slimbench.sparsity.config import GradualPruningConfig, PruneConfig, ramp_ratios
from slimbench.sparsity.select import select_layers

__all__ = ["GradualPruningConfig", "PruneConfig", "ramp_ratios", "select_layers"]
