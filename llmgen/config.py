"""User defaults: built-in values, then `config.yaml`, then `LLMGEN_*` variables (flags override all).

Every default llmgen has is defined here, once. So is how llmgen reads the files a user writes (config.yaml,
presets, chat transcripts): `read_file`, with its YAML and JSON parsers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

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
    threads: PositiveInt | None = None  # torch's own choice (the physical cores) when unset


ENV_PREFIX = "LLMGEN_"

# The most list entries (mapping entries included, at any depth) one generation setting may hold. Real
# `bad_words_ids` and `sequence_bias` lists are a few thousand; past this, transformers' processors
# take minutes and gigabytes before the first token.
MAX_SETTING_VALUES = 100_000

# The largest seed torch's generator takes: `--seed` is checked against it when flags are parsed.
MAX_SEED = 2**32 - 1

# How many new tokens a generation may have when neither the preset nor the command line says: the model's own
# generation_config rarely does, and transformers' own default (max_length 20, prompt included) cuts most answers.
DEFAULT_MAX_NEW_TOKENS = 512

# How deeply llmgen's YAML (presets, config.yaml, `--set` values) may nest: real presets use four levels.
MAX_YAML_DEPTH = 32


def load_defaults() -> Defaults:
    """Built-in defaults, overridden by config.yaml, overridden by LLMGEN_* variables."""
    path = config_dir() / "config.yaml"
    values = None
    if path.is_file():
        values = read_file(path, Defaults, "yaml", "a mapping of settings", empty_is_mapping=True)
    env = {field: os.environ[ENV_PREFIX + field.upper()] for field in Defaults.model_fields
           if os.environ.get(ENV_PREFIX + field.upper())}
    if not env:
        return values or Defaults()
    try:
        return Defaults(**{**(values.model_dump(exclude_unset=True) if values else {}), **env})
    except ValidationError as exc:  # config.yaml's values passed alone: a variable is wrong
        field = str(exc.errors()[0]["loc"][0])
        problem = format_validation_error(exc, list(Defaults.model_fields))
        raise UsageError(f"${ENV_PREFIX}{field.upper()}: {problem}") from None


Schema = TypeVar("Schema", bound=BaseModel)


def read_file(
    path: Path, schema: type[Schema], syntax: Literal["yaml", "json"], expected: str, empty_is_mapping: bool = False
) -> Schema:
    """A user's file (config.yaml, a preset, a chat transcript) as `schema` validates it; every error is a one-line
    UsageError naming the file as given.

    The file is read whole as UTF-8 and parsed as `syntax` (llmgen's YAML: no aliases, bounded depth); it must hold a
    mapping, described by `expected` in the error when it does not. An empty YAML file is an empty mapping when
    `empty_is_mapping`. What a file means beyond its schema is the caller's to check.
    """
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    data = parse_yaml(text, str(path)) if syntax == "yaml" else parse_json(text, str(path))
    if data is None and empty_is_mapping:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {expected}, got {_kind(data)}")
    try:
        return schema(**data)
    except ValidationError as exc:
        raise UsageError(f"{path}: {format_validation_error(exc, list(schema.model_fields))}") from None


def _kind(value: Any) -> str:
    return "an empty file" if value is None else type(value).__name__


def parse_json(text: str, source: str) -> Any:
    """JSON, every problem one line naming `source`: syntax, nesting too deep, numbers past Python's digit limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise UsageError(f"{source}: the JSON nests too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        first = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise UsageError(f"{source}: invalid JSON: {first}") from None


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
