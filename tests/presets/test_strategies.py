"""The strategy table: `select` against transformers' own `get_generation_mode`, and what the rows promise."""

from __future__ import annotations

import importlib
import itertools

import pytest
from transformers import GenerationConfig
from transformers.generation.configuration_utils import GenerationMode
from transformers.utils import logging as hf_logging

from llmgen import presets, strategies
from llmgen.settings import build_config

# Values on both sides of every threshold `get_generation_mode` tests, None meaning "not set".
GRID = {
    "do_sample": [None, False, True],
    "num_beams": [None, 1, 4],
    "num_beam_groups": [None, 1, 2],
    "top_k": [None, 1, 4],
    "penalty_alpha": [None, 0.0, 0.6],
    "dola_layers": [None, "high"],
    "prompt_lookup_num_tokens": [None, 3],
    "assistant_early_exit": [None, 2],
    "use_mtp": [None, True],
    "force_words_ids": [None, [[5]]],
    "constraints": [None, ["a constraint"]],
}
ASSISTANTS = [None, "a/draft-model"]


def transformers_mode(settings: dict, assistant: str | None) -> str:
    """The mode transformers picks, read off a config whose fields are set without its validation."""
    config = GenerationConfig()
    for key, value in settings.items():
        setattr(config, key, value)
    return config.get_generation_mode(assistant).value


@pytest.fixture(autouse=True)
def quiet_transformers():
    """`get_generation_mode` logs a warning for every flag it overrides; the grid sets plenty."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    yield
    hf_logging.set_verbosity(verbosity)


def test_select_agrees_with_transformers_over_a_grid_of_settings() -> None:
    disagree = []
    for values in itertools.product(*GRID.values()):
        settings = {k: v for k, v in zip(GRID, values) if v is not None}
        for assistant in ASSISTANTS:
            ours = strategies.select(settings, assistant).mode
            theirs = transformers_mode(settings, assistant)
            if ours != theirs:
                disagree.append((settings, assistant, ours, theirs))
    assert disagree == []


def test_the_grid_reaches_every_mode_and_every_row() -> None:
    modes, rows = set(), set()
    for values in itertools.product(*GRID.values()):
        settings = {k: v for k, v in zip(GRID, values) if v is not None}
        for assistant in ASSISTANTS:
            modes.add(transformers_mode(settings, assistant))
            rows.add(strategies.select(settings, assistant))
    assert modes == {mode.value for mode in GenerationMode}
    assert rows == set(strategies.TABLE)


@pytest.mark.parametrize("name", sorted(presets.discover()))
def test_every_builtin_preset_selects_what_transformers_runs(name: str) -> None:
    preset = presets.resolve(name)
    config, _ = build_config({}, preset.generation)
    row = strategies.select(preset.generation, preset.assistant_model)
    assert row.mode == config.get_generation_mode(preset.assistant_model).value
    assert preset.strategy == row.name


def test_presets_named_after_a_strategy_select_it() -> None:
    for name in presets.discover():
        if name in {row.name for row in strategies.TABLE}:
            assert presets.resolve(name).strategy == name


def test_the_two_drafting_rows_are_told_apart_by_what_drafts() -> None:
    assert strategies.select({"prompt_lookup_num_tokens": 3}).name == "prompt-lookup"
    assert strategies.select({"prompt_lookup_num_tokens": 3}, "a/draft-model").name == "assisted"
    assert strategies.select({"assistant_early_exit": 2}).name == "assisted"
    assert strategies.select({"do_sample": True}, "a/draft-model").name == "assisted"
    assert strategies.DRAFTING == (strategies.PROMPT_LOOKUP, strategies.ASSISTED)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"dola_layers": "high", "num_beams": 2}, "beam"),  # DoLa extends greedy and sampling only
        ({"prompt_lookup_num_tokens": 3, "num_beams": 2}, "beam"),  # so does drafting
        ({"dola_layers": "high", "penalty_alpha": 0.5, "top_k": 4}, "contrastive"),
        ({"dola_layers": "high", "prompt_lookup_num_tokens": 3}, "prompt-lookup"),  # drafting comes first
        ({"dola_layers": "low", "do_sample": True}, "dola"),
        ({"penalty_alpha": 0.5, "top_k": 4, "do_sample": True}, "sampling"),
        ({"num_beams": 4, "num_beam_groups": 2, "do_sample": True}, "diverse-beam"),
        ({"force_words_ids": [[5]]}, "constrained-beam"),
    ],
)
def test_precedence_follows_transformers(settings: dict, name: str) -> None:
    assert strategies.select(settings).name == name


def test_lookups_by_name_and_by_mode() -> None:
    for row in strategies.TABLE:
        assert strategies.named(row.name) is row
        assert strategies.by_mode(row.mode).mode == row.mode
    assert strategies.by_mode("assisted_generation") is strategies.PROMPT_LOOKUP
    with pytest.raises(ValueError):
        strategies.named("nucleus")
    with pytest.raises(ValueError):
        strategies.by_mode("telepathy")


def test_names_and_modes_are_transformers_own() -> None:
    assert len({row.name for row in strategies.TABLE}) == len(strategies.TABLE)
    assert {row.mode for row in strategies.TABLE} == {mode.value for mode in GenerationMode}


def test_rows_with_a_loop_name_one_that_exists() -> None:
    for row in strategies.TABLE:
        if row.loop is None:
            continue
        module, function = row.loop.split(":")
        loop = getattr(importlib.import_module(module), function)
        assert callable(loop) and callable(loop.check_settings)


def test_what_the_rows_promise() -> None:
    assert [row.name for row in strategies.TABLE if not row.batches] == ["prompt-lookup", "assisted"]
    assert [row.name for row in strategies.TABLE if not row.streams] == [
        "beam", "beam-sampling", "diverse-beam", "constrained-beam"
    ]
    assert [row.name for row in strategies.TABLE if row.reuses_cache] == ["greedy", "sampling"]
    assert [row.name for row in strategies.TABLE if row.refusal] == ["constrained-beam"]
    assert "structured output" in strategies.CONSTRAINED_BEAM.refusal


def test_contrastive_settings_its_loop_uses_are_not_warned_about() -> None:
    _, warnings = build_config({}, {"penalty_alpha": 0.6, "top_k": 4})
    assert warnings == []
    _, warnings = build_config({}, {"do_sample": False, "top_k": 4})
    assert any(w.startswith("`top_k`") for w in warnings)
