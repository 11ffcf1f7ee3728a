"""Generation settings: `--set` parsing, implied sampling, and validation.

Settings are plain dicts of transformers `GenerationConfig` fields, layered lowest first: the model's
own generation_config, the preset, a batch record's params, the command line. `build_config` merges
the layers and validates them with transformers' own `GenerationConfig` plus the range checks it
leaves to generate time, so a bad value is refused before any model runs.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmgen import strategies
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import GenerationConfig

# Settings whose value only matters when sampling: setting one of these on the command line while the
# preset is greedy means the user wants sampling.
SAMPLING_FLAGS = ("temperature", "top_p", "min_p")


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs with values read as YAML scalars or flow lists (`0.7`, `true`, `[8, 16]`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got '{pair}'")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise UsageError(f"--set {key}: cannot parse value '{raw}'") from None
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
    """Value ranges transformers only checks at generate time (or not at all)."""

    model_config = ConfigDict(extra="allow")

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


def generation_fields() -> set[str]:
    from transformers import GenerationConfig

    return set(GenerationConfig().to_dict()) - {"transformers_version"}


def check(generation: dict[str, Any], source: str) -> None:
    """Refuse unknown keys and out-of-range values in one settings layer.

    `source` names where the settings came from (a preset file, `--set`), for the error line.
    Whether the layers make sense together is `build_config`'s job.
    """
    valid = generation_fields()
    for key in generation:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"{source}: unknown generation setting '{key}'{hint}")
    try:
        _Ranges(**generation)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"{source}: {err['loc'][0]}: {err['msg']} (got {err['input']!r})") from None


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
