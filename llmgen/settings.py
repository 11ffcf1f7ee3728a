"""Generation settings: `--set` parsing, implied sampling, and validation.

Settings are plain dicts of transformers `GenerationConfig` fields, layered lowest first: the model's
own generation_config, the preset, a batch record's params, the command line. `check` refuses a bad
layer alone (unknown keys, the range checks transformers leaves to generate time); `build_config`
merges the layers and validates them with transformers' own `GenerationConfig`, for `llmgen.plans`,
so a bad value is refused before any model runs.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from llmgen import strategies
from llmgen.config import MAX_SETTING_VALUES, parse_yaml
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import GenerationConfig

# Settings whose value only matters when sampling: setting one of these on the command line while the
# preset is greedy means the user wants sampling.
SAMPLING_FLAGS = ("temperature", "top_p", "min_p")


def parse_set(pairs: list[str], source: str = "--set") -> dict[str, Any]:
    """`KEY=VALUE` pairs with values read as YAML scalars or flow lists (`0.7`, `true`, `[8, 16]`).

    A value of the wrong type (`max_new_tokens="5"`) is refused here, where the error can name `source`;
    ranges and unknown keys are `check`'s.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{source} expects KEY=VALUE, got '{pair}'")
        out[key] = parse_yaml(raw, f"{source} {key}") if raw.strip() else None
    problem = _value_problem(out)
    if problem is not None and problem[1]:
        raise UsageError(f"{source}: {problem[0]}")
    return out


def imply_sampling(overrides: dict[str, Any]) -> dict[str, Any]:
    """`-t 0.8` on a greedy preset means "sample at 0.8"; `-t 0` means greedy, as in other CLIs."""
    overrides = dict(overrides)
    if "do_sample" in overrides:
        return overrides
    if overrides.get("temperature") == 0:
        overrides.pop("temperature")
        overrides["do_sample"] = False
    elif any(overrides.get(k) is not None for k in SAMPLING_FLAGS):
        overrides["do_sample"] = True
    return overrides


class _Ranges(BaseModel):
    """Value types and ranges transformers only checks at generate time (or not at all).

    Strict: transformers keeps a value as given, so `max_new_tokens: "5"` would fail mid-generation.
    Floats accept integers; nothing else is converted.
    """

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    max_new_tokens: int | None = Field(None, ge=1)
    min_new_tokens: int | None = Field(None, ge=0)
    do_sample: bool | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    num_beams: int | None = Field(None, ge=1)
    num_beam_groups: int | None = Field(None, ge=1)
    num_return_sequences: int | None = Field(None, ge=1)
    diversity_penalty: float | None = Field(None, ge=0)
    penalty_alpha: float | None = Field(None, ge=0, le=1)
    prompt_lookup_num_tokens: int | None = Field(None, ge=1)
    stop_strings: str | list[str] | None = None

    @field_validator("stop_strings", mode="before")
    @classmethod
    def _stop_strings(cls, value: Any) -> Any:
        """An empty stop string matches at once: every answer would end after one token."""
        texts = [value] if isinstance(value, str) else value
        if value is None:
            return value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise PydanticCustomError("text_list_type", "must be a string or a list of strings")
        if "" in texts:
            raise PydanticCustomError("stop_strings_value",
                                      "an empty stop string would end every answer at its first token")
        if not texts:  # transformers fails on it mid-run
            raise PydanticCustomError("stop_strings_value", "an empty list; leave stop_strings out for none")
        return value


# What a value of each type pydantic refuses should have been, in the user's words.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "text_list_type": "a string or a list of strings",
}


def _value_problem(generation: dict[str, Any]) -> tuple[str, bool] | None:
    """The first value of the wrong type, size or range, and whether it is of the wrong type."""
    for key, value in generation.items():
        if _larger_than(value, MAX_SETTING_VALUES):
            return f"{key}: more than {MAX_SETTING_VALUES:,} values (llmgen's bound for one setting)", False
    try:
        _Ranges(**generation)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = err["loc"][0]
        if err["type"] in _EXPECTED:
            return f"{key} must be {_EXPECTED[err['type']]}, got {_describe(err['input'])}", True
        if err["type"] == "stop_strings_value":
            return f"{key}: {err['msg']}", False
        return f"{key}: {err['msg']} (got {err['input']!r})", False
    return None


def _larger_than(value: Any, limit: int) -> bool:
    """Whether nested lists and mappings hold more than `limit` entries; stops counting at the limit."""
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (list, tuple, dict)):
            count += len(item)
            if count > limit:
                return True
            pending.extend(item.values() if isinstance(item, dict) else item)
    return False


def _describe(value: Any) -> str:
    """A value as the user wrote it (YAML/JSON words), short."""
    if isinstance(value, str):
        shown = json.dumps(value if len(value) <= 40 else value[:40] + "…", ensure_ascii=False)
        return f"the string {shown}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return {"list": "a list", "tuple": "a list", "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


def check_values(generation: dict[str, Any], source: str) -> None:
    """Refuse values of the wrong type, size or range in one settings layer, without importing transformers.

    `source` names where the settings came from (a preset file, `--set`, `params`), for the error line.
    """
    problem = _value_problem(generation)
    if problem is not None:
        raise UsageError(f"{source}: {problem[0]}")


@functools.cache
def generation_fields() -> frozenset[str]:
    from transformers import GenerationConfig

    return frozenset(GenerationConfig().to_dict()) - {"transformers_version"}


def check_keys(generation: dict[str, Any], source: str) -> None:
    """Refuse keys that are no GenerationConfig setting, suggesting the nearest one; `source` names the layer."""
    valid = generation_fields()
    for key in generation:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"{source}: unknown generation setting '{key}'{hint}")


def check(generation: dict[str, Any], source: str) -> None:
    """Refuse unknown keys and values of the wrong type, size or range in one settings layer.

    `source` names where the settings came from (a preset file, `--set`), for the error line.
    Whether the layers make sense together is `llmgen.plans.plan`'s job.
    """
    check_keys(generation, source)
    check_values(generation, source)


def build_config(
    base: dict[str, Any], *layers: dict[str, Any], source: str = "invalid generation settings"
) -> tuple[GenerationConfig, list[str]]:
    """Merge settings layers over the model's own defaults into a GenerationConfig that transformers accepts.

    Returns the config and warnings about settings the selected strategy ignores.
    """
    from transformers import GenerationConfig

    merged = dict(base)
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    try:
        with _transformers_quiet():  # it logs the advice _validate turns into warnings
            config = GenerationConfig(**merged)
            return config, _validate(config)
    except ValueError as exc:
        raise UsageError(f"{source}: {_first_line(exc)}") from None


def _validate(config: GenerationConfig) -> list[str]:
    """Strict validation errors that are only "this flag is ignored" become warnings."""
    try:
        config.validate(strict=True)
        return []
    except ValueError as strict_error:
        config.validate(strict=False)
        used = strategies.select(config.to_dict()).loop_uses
        return [
            line.removeprefix("- ").strip()
            for line in str(strict_error).splitlines()
            if line.startswith("- ") and not line.removeprefix("- ").startswith(tuple(f"`{k}`" for k in used))
        ]


@contextlib.contextmanager
def _transformers_quiet() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip("- ").strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 and lines[0].endswith("invalid:") else lines[0]


def effective(config: GenerationConfig) -> dict[str, Any]:
    """The settings that differ from transformers' defaults: what the user's choices amount to."""
    return {k: v for k, v in config.to_diff_dict().items() if k != "transformers_version"}
