"""The efficiency score of the brief (lower is better), with named rules and both pruning readings.

    score = (1-(Ps+Pu)) * (qw/32) * w/W0  +  (1-Ps) * (max(qw,qa)/32) * f/F0

Structured pruning is counted once: when w and f are measured on the slimmed model (the default,
``measured_on="pruned"``), the removed filters are already out of w and f and Ps enters as 0; Ps > 0 is
applied only to w and f of the unpruned architecture (``measured_on="original"``). The same holds for
unstructured pruning with w counted as non-zero weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from slimbench.config import StrictModel, read_yaml, validate
from slimbench.errors import ConfigError


class ScoreRule(StrictModel):
    """Normalisers, eligibility threshold and how ``f`` is counted, with where they come from."""

    name: str
    param_norm: float = Field(gt=0)
    op_norm: float = Field(gt=0)
    op_counting: Literal["macs", "micronet-ops"] = "macs"
    min_accuracy: float = Field(0.90, ge=0, le=1)
    source: str = ""


PRESETS: dict[str, ScoreRule] = {
    "brief": ScoreRule(
        name="brief", param_norm=5.6e6, op_norm=8.3e8, op_counting="macs",
        source="the brief: MACs divided by 8.3e8, parameters by 5.6e6 (ResNet-18 at fp16, IMT Atlantique "
               "'Efficient Deep Learning' course, after the MicroNet challenge, NeurIPS 2019)",
    ),
    "course-macs": ScoreRule(
        name="course-macs", param_norm=5.6e6, op_norm=2.8e8, op_counting="macs",
        source="IMT Atlantique course, 2025 text: f counted as MACs and divided by 2.8e8",
    ),
    "micronet-ops": ScoreRule(
        name="micronet-ops", param_norm=5.6e6, op_norm=8.3e8, op_counting="micronet-ops",
        source="MicroNet challenge: 8.3e8 is ResNet-18's operation count (multiplies at their bit width, "
               "additions at 32 bits, batch norm 3 ops per element); f must be counted the same way",
    ),
}


def load_rule(name_or_path: str) -> ScoreRule:
    """A preset by name, or a user rule from a YAML file with the same keys."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return validate(ScoreRule, read_yaml(path), str(path))
    raise ConfigError(f"unknown score rule {name_or_path!r}; presets: {', '.join(PRESETS)}, or a YAML file")


class ScoreInputs(StrictModel):
    w: float = Field(gt=0, description="parameters (non-zero ones, after unstructured pruning)")
    f: float = Field(gt=0, description="operations, counted by the rule's op_counting")
    ps: float = Field(0.0, ge=0, lt=1, description="structured pruning ratio")
    pu: float = Field(0.0, ge=0, lt=1, description="unstructured pruning ratio")
    qw: float = Field(32, gt=0, le=32, description="weight bits")
    qa: float = Field(32, gt=0, le=32, description="activation bits")
    op_bits: float | None = Field(None, gt=0, le=32, description="effective max(qw, qa), MAC-weighted over layers "
                                  "(mixed precision); None: max(qw, qa)")
    measured_on: Literal["pruned", "original"] = "pruned"

    @property
    def max_bits(self) -> float:
        """The bits of the operation term: ``op_bits`` when given (mixed precision), else max(qw, qa)."""
        return self.op_bits if self.op_bits is not None else max(self.qw, self.qa)

    @model_validator(mode="after")
    def _ratios(self) -> ScoreInputs:
        if self.ps + self.pu >= 1:
            raise ValueError(f"ps + pu must be below 1, got {self.ps + self.pu}")
        return self


@dataclass
class ScoreBreakdown:
    rule: ScoreRule
    inputs: ScoreInputs
    ps_applied: float
    pu_applied: float
    param_term: float
    op_term: float
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.param_term + self.op_term


def compute_score(inputs: ScoreInputs, rule: ScoreRule | str = "brief") -> ScoreBreakdown:
    """Both terms of the score; pruning ratios are applied only where w and f do not already reflect them."""
    rule = load_rule(rule) if isinstance(rule, str) else rule
    notes = []
    if inputs.measured_on == "pruned":
        ps, pu = 0.0, 0.0
        if inputs.ps or inputs.pu:
            notes.append(
                f"w and f were measured on the pruned model, so Ps={inputs.ps:g} and Pu={inputs.pu:g} are already in "
                "them and enter the formula as 0 (counting them again would reward the same pruning twice)"
            )
    else:
        ps, pu = inputs.ps, inputs.pu
        notes.append("w and f are those of the unpruned architecture: the formula applies Ps and Pu")
    param_term = (1 - (ps + pu)) * (inputs.qw / 32) * inputs.w / rule.param_norm
    if rule.op_counting == "micronet-ops":  # each operation already carries its bit width in f
        notes.append("f counts MicroNet operations (multiplies at their bits, additions at 32 bits, batch norm "
                     "3 per element), so the bit factor of the operation term is 1")
        op_term = (1 - ps) * inputs.f / rule.op_norm
        return ScoreBreakdown(rule=rule, inputs=inputs, ps_applied=ps, pu_applied=pu, param_term=param_term,
                              op_term=op_term, notes=notes)
    if inputs.op_bits is not None:
        notes.append(f"mixed precision: max(qw, qa) is {inputs.op_bits:.3g} bits, the MAC-weighted mean of each "
                     "layer's own max(qw, qa); qw is weighted by the weights as stored")
    op_term = (1 - ps) * (inputs.max_bits / 32) * inputs.f / rule.op_norm
    return ScoreBreakdown(rule=rule, inputs=inputs, ps_applied=ps, pu_applied=pu, param_term=param_term,
                          op_term=op_term, notes=notes)


def micronet_inputs(model: Any, quant: dict[str, Any], qw: float | None = None) -> tuple[float, float]:
    """w and f for the MicroNet rule: w adds a 1-bit mask per element of every sparse tensor (in units of
    ``qw``, the weight width the formula is given, so that its qw/32 makes it 1 bit); f is the operation count."""
    from slimbench.measure.counts import count_micronet_ops, layer_bits_of

    layers, default = layer_bits_of(quant)
    ops = count_micronet_ops(model, layers, default)
    qw = float(quant.get("weight_bits", 32)) if qw is None else qw
    nonzero = mask_bits = 0.0
    for _, tensor in model.named_parameters():
        kept = int(tensor.count_nonzero())
        nonzero += kept
        if kept < tensor.numel():
            mask_bits += tensor.numel()
    return nonzero + mask_bits / qw, ops.total


def pruning_ratios(lineage: list[dict[str, Any]]) -> tuple[float, float]:
    """(Ps, Pu) of a lineage: every prune step records its share of the *original* parameters, so they add."""
    steps = [step.get("metrics") or {} for step in lineage if step.get("stage") == "prune"]
    ps = sum(float(m.get("structured_ratio", 0)) for m in steps)
    pu = sum(float(m.get("unstructured_ratio", 0)) for m in steps)
    return min(ps, 0.99), min(pu, 0.99)


def inputs_from_artifact(path: str | Path, rule: ScoreRule,
                         source: str | Path | None = None) -> tuple[ScoreInputs, float | None]:
    """w, f, Ps, Pu, qw, qa as the saved model really is, plus its recorded test accuracy.

    w is the non-zero parameter count and f the MACs of the model as stored, so pruning already shows in
    them (``measured_on="pruned"``); the pruning ratios are read from the lineage for the record only.
    ``source``: for an exported file under a rule that counts operations on the network, the model it was
    exported from where it is now (its sidecar names where it was); its lineage must be the export's. Exports
    whose sidecar records the network's MicroNet counts (every export since they were added) need none.
    """
    from slimbench.artifact import is_exported_file, load_model
    from slimbench.measure import count_model

    model = None
    if is_exported_file(path):  # ONNX or LiteRT, float or int8: the sidecar holds the counts, bits and lineage
        from slimbench.artifact import read_sidecar

        sidecar = read_sidecar(path)
        metrics, lineage, quant = sidecar.get("metrics") or {}, sidecar.get("lineage") or [], sidecar.get("quant") or {}
        if "nonzero_params" not in metrics or "macs" not in metrics:
            raise ConfigError(f"{path}: its sidecar records no parameter or MAC counts; re-export it")
        w, f = float(metrics["nonzero_params"]), float(metrics["macs"])
        recorded_network = "micronet_params" in metrics and "micronet_ops" in metrics
        counts_on_network = rule.op_counting == "micronet-ops" and (source is not None or not recorded_network)
        # exports record the score's qw since it averages over the stored weights; for an older mixed-precision
        # one it is counted on its source where that is at hand, else its recipe's bits stand, as they do for such
        # one (MicroNet's mask bits recorded at export were counted in its recipe's bits, which then stay with them)
        qw_on_network = ("scored_weight_bits" not in metrics and bool(quant.get("layers"))
                         and (rule.op_counting != "micronet-ops" or counts_on_network))
        qw = float(metrics.get("scored_weight_bits", quant.get("weight_bits", 32)))
        if counts_on_network or qw_on_network:
            recorded = Path(sidecar.get("source_checkpoint") or "")
            candidate = Path(source) if source is not None else recorded
            if candidate.is_file():
                model, artifact = load_model(candidate)
                if candidate != recorded and artifact.lineage != sidecar.get("lineage"):
                    raise ConfigError(f"{candidate} is not the model {path} was exported from (their lineages differ)")
                if qw_on_network:
                    from slimbench.measure.counts import scored_weight_bits

                    qw = scored_weight_bits(model, quant, lineage, artifact.masks)
            elif counts_on_network:
                raise ConfigError(f"{path}: rule {rule.name} counts operations on the model it was exported from, "
                                  f"and {candidate} is gone")
        if rule.op_counting == "micronet-ops" and not counts_on_network:
            w, f = float(metrics["micronet_params"]), float(metrics["micronet_ops"])  # counted at export
            model = None
    else:
        from slimbench.measure.counts import scored_nonzero, scored_weight_bits

        model, artifact = load_model(path)
        counts = count_model(model)
        metrics, lineage, quant = artifact.metrics, artifact.lineage, artifact.quant or {}
        w, f = float(scored_nonzero(model, quant, lineage, artifact.masks)), float(counts.macs)
        qw = scored_weight_bits(model, quant, lineage, artifact.masks)
    if rule.op_counting == "micronet-ops" and model is not None:
        w, f = micronet_inputs(model.float(), quant, qw)
    ps, pu = pruning_ratios(lineage)
    inputs = ScoreInputs(w=w, f=f, ps=ps, pu=pu,
                         qw=qw, qa=float(quant.get("activation_bits", 32)),
                         op_bits=quant.get("op_bits"), measured_on="pruned")
    accuracy = metrics.get("test_acc")
    return inputs, float(accuracy) if isinstance(accuracy, int | float) else None
