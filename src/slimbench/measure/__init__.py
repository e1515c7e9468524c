"""Measurements of a model: accuracy on a split (parameters, MACs, size and latency come next)."""

from slimbench.measure.accuracy import Evaluation, evaluate, resolve_device, resolve_precision
from slimbench.measure.report import evaluate_checkpoint, plot_confusion

__all__ = ["Evaluation", "evaluate", "evaluate_checkpoint", "plot_confusion", "resolve_device", "resolve_precision"]
