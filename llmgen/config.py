"""User defaults: built-in values, then `config.yaml`, then `LLMGEN_*` variables (flags override all).

Every default llmgen has is defined here, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llmgen.errors import UsageError

Quant = Literal["auto", "4bit", "8bit", "none"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "llmgen"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmgen"


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "llmgen"


class Defaults(BaseModel):
    """The settings a user may default in config.yaml or the environment."""

    model_config = ConfigDict(extra="forbid")

    model: str = "builtin"
    preset: str = "greedy"
    chat_preset: str = "chat"
    quant: Quant = "auto"
    device: str = "auto"
    dtype: DType = "auto"


ENV_PREFIX = "LLMGEN_"


def load_defaults() -> Defaults:
    """Built-in defaults, overridden by config.yaml, overridden by LLMGEN_* variables."""
    path = config_dir() / "config.yaml"
    values: dict = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: {_yaml_problem(exc)}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    for field in Defaults.model_fields:
        env = os.environ.get(ENV_PREFIX + field.upper())
        if env:
            values[field] = env
    try:
        return Defaults(**values)
    except ValidationError as exc:
        raise UsageError(f"{path}: {format_validation_error(exc, list(Defaults.model_fields))}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def format_validation_error(exc: ValidationError, valid_keys: list[str]) -> str:
    """The first pydantic error as `field: message`, suggesting the nearest key for unknown ones."""
    import difflib

    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), valid_keys, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid_keys)})"
        return f"unknown key '{field}'{hint}"
    return f"{field}: {err['msg']}"
