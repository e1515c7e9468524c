"""The efficiency score: the formula, named rules (presets or YAML), and explanations."""

from slimbench.score.formula import (
    PRESETS,
    ScoreBreakdown,
    ScoreInputs,
    ScoreRule,
    compute_score,
    inputs_from_artifact,
    load_rule,
    pruning_ratios,
)

__all__ = ["PRESETS", "ScoreBreakdown", "ScoreInputs", "ScoreRule", "compute_score", "inputs_from_artifact", "load_rule",
           "pruning_ratios"]
