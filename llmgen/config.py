"""User defaults: built-in values, then `config.yaml`, then `LLMGEN_*` variables (flags override all).

Every default llmgen has is defined here, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

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

# The most list entries (mapping entries included, at any depth) one generation setting may hold. Real
# `bad_words_ids` and `sequence_bias` lists are a few thousand; past this, transformers' processors
# take minutes and gigabytes before the first token.
MAX_SETTING_VALUES = 100_000

# How deeply llmgen's YAML (presets, config.yaml, `--set` values) may nest: real presets use four levels.
MAX_YAML_DEPTH = 32


def load_defaults() -> Defaults:
    """Built-in defaults, overridden by config.yaml, overridden by LLMGEN_* variables."""
    path = config_dir() / "config.yaml"
    values: dict = {}
    if path.is_file():
        try:
            loaded = read_yaml(path) or {}
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
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


def read_yaml(path: Path) -> Any:
    """A YAML file llmgen reads (a preset, config.yaml); every error is a UsageError naming the file.

    Raises OSError for the caller to put in its own words.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """Safe YAML without anchors or aliases: a few hundred bytes of aliases can expand to billions of values.

    They are refused while the document is composed, before anything expands.
    """
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: {_yaml_problem(exc, text)}") from None


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and deep nesting when composing, where each shows as one event."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed; write the values out",
                event.start_mark,
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _yaml_problem(exc: yaml.YAMLError, text: str = "") -> str:
    """One line: where in `text`, and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        problem = f"unacceptable character #x{exc.character:04x}: special characters are not allowed"
        return f"line {line + 1}, column {column + 1}: invalid YAML: {problem}"
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
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
