"""Preset files: where they live, their schema, and `extends` chains.

A preset is a YAML file, or a generation-config JSON file (`llmgen.genconfig`), read into the same `Preset`;
the name `model` is the empty preset, which leaves the model's own generation_config alone.

`load` is how a command that generates takes a preset: resolved, and checked as a whole before any
model loads. `resolve` alone needs only PyYAML and pydantic, so `llmgen presets list` starts fast:
reading checks the generation values' types and ranges; `load` also checks each file's keys against
transformers and makes the plan the preset amounts to (`llmgen.plans`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmgen import constraints, genconfig, plans
from llmgen.config import Quant, config_dir, read_file
from llmgen.constraints import Constraint
from llmgen.errors import UsageError
from llmgen.settings import check_keys, check_values
from llmgen.strategies import select


class Preset(BaseModel):
    """One preset file as written: generation fields plus a few llmgen-level defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    extends: str | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    quant: Quant | None = None
    system: str | None = None
    assistant_model: str | None = None
    constraint: dict[str, Any] | None = None  # one of json_schema, json_object, regex, grammar, choice
    cache: str | None = None
    cache_config: dict[str, Any] | None = None


# Preset keys that are generation settings under a shorter name: `cache: quantized` is `cache_implementation`.
GENERATION_ALIASES = {"cache": "cache_implementation", "cache_config": "cache_config"}


@dataclass(frozen=True)
class PresetFile:
    name: str
    path: Path
    builtin: bool
    shadows_builtin: bool = False
    model_own: bool = False
    """The `model` preset: no file of its own; `path` names the model's file it leaves alone."""


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset with its `extends` chain applied, parents first."""

    name: str
    chain: tuple[PresetFile, ...]
    description: str
    generation: dict[str, Any]
    quant: Quant | None = None
    system: str | None = None
    assistant_model: str | None = None
    constraint: Constraint | None = None

    @property
    def strategy(self) -> str:
        return select(self.generation, self.assistant_model).name


def builtin_dir() -> Path:
    return Path(__file__).parent / "presets"


def user_dir() -> Path:
    return config_dir() / "presets"


def discover() -> dict[str, PresetFile]:
    """Every preset by name: the built-in ones, then the user's, which shadow built-ins of the same name."""
    found = {p.stem: PresetFile(p.stem, p, builtin=True) for p in sorted(builtin_dir().glob("*.yaml"))}
    if user_dir().is_dir():
        for path in sorted(user_dir().glob("*.yaml")):
            found[path.stem] = PresetFile(path.stem, path, builtin=False, shadows_builtin=path.stem in found)
    return found


def read(path: Path) -> Preset:
    """Parse and schema-check one preset file, generation values' types and ranges included.

    Every error names the file. A `.json` file is a generation config: its settings are the preset's `generation`.
    """
    if genconfig.is_file_spec(path.name):
        description = f"The generation config {path}."
        preset = Preset(name=path.name, description=description, generation=genconfig.read_settings(path))
    else:
        preset = read_file(path, Preset, "yaml", "a mapping with a 'generation:' section")
    for key, setting in GENERATION_ALIASES.items():
        value = getattr(preset, key)
        if value is not None:
            if setting in preset.generation:
                raise UsageError(f"{path}: '{key}' and 'generation.{setting}' both set; keep one")
            preset.generation[setting] = value
    check_values(preset.generation, str(path))
    return preset


def find(name_or_path: str) -> PresetFile:
    """A preset by name, or a path to a YAML or generation-config (JSON) file."""
    if name_or_path.endswith((".yaml", ".yml")) or genconfig.is_file_spec(name_or_path) or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise UsageError(f"preset file not found: {name_or_path}")
        return PresetFile(path.stem, path, builtin=False)
    presets = discover()
    if name_or_path not in presets:
        close = difflib.get_close_matches(name_or_path, presets, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'llmgen presets list'"
        raise UsageError(f"unknown preset '{name_or_path}'", hint=hint)
    return presets[name_or_path]


def resolve(name_or_path: str) -> ResolvedPreset:
    """Follow `extends` from a preset to its root and merge, children overriding parents."""
    return _merge(_chain(name_or_path))


def load(name_or_path: str) -> ResolvedPreset:
    """A preset to generate with: resolved, every file's keys checked against transformers' settings, and the
    settings it amounts to accepted by transformers and by its strategy (the plan a model would run, less the
    model's own defaults), so that a bad preset fails before any model loads, naming its file.
    """
    chain = _chain(name_or_path)
    for found, preset in chain:
        check_keys(preset.generation, str(found.path))
    resolved = _merge(chain)
    plans.plan(resolved, source=str(resolved.chain[0].path))
    return resolved


def _chain(name_or_path: str) -> list[tuple[PresetFile, Preset]]:
    """The preset and the ones it extends, each read, child first; a cycle is refused."""
    if name_or_path == genconfig.MODEL:
        own = "The model's own generation_config.json alone, with no preset over it."
        return [(PresetFile(genconfig.MODEL, Path(genconfig.FILE_NAME), builtin=True, model_own=True), Preset(description=own))]
    chain: list[tuple[PresetFile, Preset]] = []
    current: PresetFile | None = find(name_or_path)
    while current is not None:
        if any(f.path == current.path for f, _ in chain):
            names = " -> ".join([f.name for f, _ in chain] + [current.name])
            raise UsageError(f"{chain[0][0].path}: 'extends' cycle: {names}")
        preset = read(current.path)
        chain.append((current, preset))
        current = _parent(current, preset.extends) if preset.extends else None
    return chain


def _merge(chain: list[tuple[PresetFile, Preset]]) -> ResolvedPreset:
    """One preset from a chain, children overriding parents."""
    merged: dict[str, Any] = {"generation": {}}
    for found, preset in reversed(chain):
        merged["generation"].update(preset.generation)
        if preset.constraint is not None:
            merged["constraint"] = _constraint(preset.constraint, found.path)
        for key in ("description", "quant", "system", "assistant_model"):
            value = getattr(preset, key)
            if value:
                merged[key] = value
    first_file, first = chain[0]
    return ResolvedPreset(
        name=first.name or first_file.name,
        chain=tuple(f for f, _ in chain),
        description=first.description or merged.get("description", ""),
        generation=merged["generation"],
        quant=merged.get("quant"),
        system=merged.get("system"),
        assistant_model=merged.get("assistant_model"),
        constraint=merged.get("constraint"),
    )


def _constraint(data: dict[str, Any], path: Path) -> Constraint | None:
    """A preset's `constraint:` mapping, checked like the command line's flags."""
    unknown = sorted(set(data) - set(constraints.KINDS))
    if unknown:
        raise UsageError(f"{path}: constraint: unknown key {unknown[0]!r} (one of {', '.join(constraints.KINDS)})")
    return constraints.from_mapping(data, f"{path}: constraint")


def _parent(child: PresetFile, name: str) -> PresetFile:
    """The preset named by `extends`; a user preset that extends its own name means the built-in one."""
    if name == child.name and not child.builtin:
        builtin = builtin_dir() / f"{name}.yaml"
        if builtin.is_file():
            return PresetFile(name, builtin, builtin=True)
    try:
        return find(name)
    except UsageError as exc:
        raise UsageError(f"{child.path}: extends {exc}", hint=exc.hint) from None
