"""Measurements of a model: accuracy, parameters, MACs, size, CPU latency, and static diagnosis."""

from slimbench.measure.accuracy import Evaluation, evaluate, resolve_device, resolve_precision
from slimbench.measure.counts import COUNTING_RULE, LayerCount, ModelCounts, count_model, storage_bytes
from slimbench.measure.doctor import Finding, diagnose, diagnose_target
from slimbench.measure.latency import Latency, measure_latency
from slimbench.measure.report import evaluate_checkpoint, plot_confusion
from slimbench.measure.summary import measure, memory_of

__all__ = [
    "COUNTING_RULE", "Evaluation", "Finding", "Latency", "LayerCount", "ModelCounts", "count_model", "diagnose",
    "diagnose_target", "evaluate", "evaluate_checkpoint", "measure", "measure_latency", "memory_of", "plot_confusion",
    "resolve_device", "resolve_precision", "storage_bytes",
]
