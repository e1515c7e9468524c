"""YAML configs validated by pydantic, with ``key.path=value`` overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from slimbench.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """``["optimizer.lr=0.05", "epochs=3"]`` or ``{"optimizer.lr": 0.05}`` on a nested dict (values parsed as YAML)."""
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    out = _deep_copy(data)
    for dotted, value in items:
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"config key {dotted!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid recursively over ``base``."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(override: str) -> tuple[str, Any]:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    key, raw = override.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def validate(model: type[T], data: dict[str, Any], source: str = "config") -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        message = f"{source}: unknown key {key!r}"
    elif not err["loc"] and err["type"] == "value_error":  # a rule across keys: its own words say which
        message = f"{source}: {err['msg'].removeprefix('Value error, ')}"
    else:
        message = f"{source}: key {key!r}: {err['msg']}"
        if "input" in err and not isinstance(err["input"], dict):
            message += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    return message + (f" (and {more} more)" if more else "")


def load_config(model: type[T], path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> T:
    """Defaults, then the YAML file, then overrides; validated at the end."""
    data = read_yaml(path) if path else {}
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(model, data, str(path) if path else "config")


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
