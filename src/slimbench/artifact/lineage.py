"""Lineage records: what each stage did to a model, built by one constructor and read by one set of readers."""

from __future__ import annotations

from typing import Any

from slimbench.artifact.core import code_version, config_hash, now_iso


def lineage_step(stage: str, config: dict[str, Any], parent: str | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """The record a stage appends: its kind, its resolved config (and hash), the digest of the artifact it was
    applied to, the code that ran it, when, and what it measured."""
    return {"stage": stage, "config": config, "config_hash": config_hash(config), "parent": parent,
            "code": code_version(), "time": now_iso(), "metrics": metrics}


def training_config(lineage: list[dict[str, Any]]) -> dict[str, Any]:
    """The resolved config of the last training step ({} when the lineage has none)."""
    for step in reversed(lineage):
        if step.get("stage") == "train":
            return dict(step.get("config") or {})
    return {}


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """A training config without what names its run (name, start, teacher): what a run continuing it inherits.
    ``fresh_weights`` is part of the start: a fine-tune of a model trained from scratch keeps its weights."""
    return {key: value for key, value in config.items()
            if key not in ("name", "init_from", "fresh_weights", "distill")}


def training_data(lineage: list[dict[str, Any]]) -> dict[str, Any]:
    """The data section of the last training step: which dataset, folder and validation split it used."""
    return dict(training_config(lineage).get("data") or {})


def inherited_lineage(lineage: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """A run's lineage without the steps the run appended itself, and the digest of the model it started from.

    The run's own steps (a training step, and a gradual-pruning step before it) were all applied to the same
    model, so they share their ``parent``; the step before them was applied to an earlier one."""
    if not lineage:
        return [], None
    parent = lineage[-1].get("parent")
    cut = len(lineage)
    while cut > 0 and lineage[cut - 1].get("parent") == parent:
        cut -= 1
    return list(lineage[:cut]), parent
