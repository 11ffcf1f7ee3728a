"""Plans: the one place where settings layers merge and get validated.

A `Plan` is everything decided before generating: the GenerationConfig, the strategy's row, the seed, the
draft model. `plan` makes one from the layers, lowest first: a base (the model's own generation_config under
llmgen's default length, once a model is loaded), the preset, then overrides (a batch record's params, the
command line). `Engine.plan` calls it with the model's defaults; before a model loads, `presets.load` and
`Session.open` call it without, so that bad input fails before the load, through the same checks.
Nothing here imports torch or transformers until a plan is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmgen import caches, constraints, settings, strategies
from llmgen.decoding import check_settings
from llmgen.errors import UsageError
from llmgen.strategies import Strategy

if TYPE_CHECKING:
    from transformers import GenerationConfig

    from llmgen.constraints import Constraint


class PresetSettings(Protocol):
    """What a plan takes from a preset (`presets.ResolvedPreset` is one): plans sit below presets."""

    name: str
    generation: dict[str, Any]
    assistant_model: str | None


@dataclass(frozen=True)
class Plan:
    """Everything decided before generating: the validated config and how it came about."""

    config: GenerationConfig
    preset: str
    row: Strategy
    warnings: tuple[str, ...] = ()
    seed: int | None = None
    assistant: str | None = None
    constraint: Constraint | None = None

    @property
    def strategy(self) -> str:
        """The strategy's name, as printed and in `--json` outputs."""
        return self.row.name

    @property
    def streams(self) -> bool:
        """Whether text can be shown as it comes: not for beams, nor for several sequences at once."""
        return self.row.streams and (self.config.num_return_sequences or 1) == 1

    @property
    def batches(self) -> bool:
        """Whether several requests can share one generate call under this plan."""
        return self.row.batches

    @property
    def rows_per_request(self) -> int:
        """Sequences generate carries for each request: beams or return sequences, whichever is more."""
        return max(self.config.num_beams or 1, self.config.num_return_sequences or 1)

    @property
    def stops(self) -> list[str]:
        stops = self.config.stop_strings or []
        return [stops] if isinstance(stops, str) else list(stops)


def plan(
    preset: PresetSettings,
    *overrides: dict[str, Any],
    base: dict[str, Any] | None = None,
    seed: int | None = None,
    source: str | None = None,
) -> Plan:
    """Layer `base`, the preset and `overrides` (lowest first) into a Plan transformers and the strategy's loop accept.

    Each override layer is checked alone (keys, value types and ranges), then the layers together by transformers'
    own GenerationConfig validation; then the strategy they select must be one llmgen runs, with settings its loop
    can run with. `source` names the layers above the base in errors (a preset's file, "command line").
    """
    constraint, overrides = _take_constraint(getattr(preset, "constraint", None), overrides)
    for layer in overrides:
        settings.check(layer, source or "settings")
    caches.check_names([(f"preset {preset.name}", preset.generation), *((source or "settings", o) for o in overrides)])
    config, warnings = settings.build_config(
        base or {}, preset.generation, *overrides, source=source or "invalid generation settings"
    )
    row = strategies.select(config.to_dict(), preset.assistant_model)
    if row.refusal:
        raise UsageError(row.refusal)
    check_settings(row, config)
    warnings.extend(caches.check(config, row))
    if preset.assistant_model and (config.num_beams or 1) > 1:
        raise UsageError(f"preset {preset.name}: assisted decoding works with greedy or sampling, not beams")
    if constraint is not None and config.stop_strings:
        raise UsageError(f"a {constraint.kind} constraint and stop strings cannot go together: a stop string would "
                         "cut the constrained output short")
    return Plan(config, preset.name, row, tuple(warnings), seed, preset.assistant_model, constraint)


def _take_constraint(
    constraint: Constraint | None, overrides: tuple[dict[str, Any], ...]
) -> tuple[Constraint | None, tuple[dict[str, Any], ...]]:
    """The constraint of the highest layer that sets one, and the layers without it.

    A layer sets one as a checked `Constraint` under `constraint` (None for none), or as the user wrote it under
    one of the kinds' own keys (`json_schema`, `regex`, ... as chat's `/set` and transcripts keep it).
    """
    layers = []
    for layer in overrides:
        kinds = [k for k in constraints.KINDS if k in layer]
        if constraints.KEY in layer or kinds:
            layer = dict(layer)
            constraint = layer.pop(constraints.KEY, constraint)
            if isinstance(constraint, dict):  # as a preset writes it, given by `--set constraint={regex: ...}`
                constraint = constraints.from_mapping(constraint, "constraint")
            elif constraint is not None and not isinstance(constraint, constraints.Constraint):
                raise UsageError(f"constraint: expected a mapping of one of {', '.join(constraints.KINDS)}, "
                                 f"got {constraint!r:.40}")
            written = {k: layer.pop(k) for k in kinds}
            if kinds:
                constraint = constraints.from_mapping(written, "settings")
        layers.append(layer)
    return constraint, tuple(layers)
