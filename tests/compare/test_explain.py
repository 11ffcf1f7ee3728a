"""`presets show --explain` against what transformers builds for the real model."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from transformers import StoppingCriteriaList

from llmgen import presets
from llmgen.explain import explain


def built_by_transformers(engine, preset) -> tuple[list[str], list[str]]:
    """Class names of the processors and criteria `generate` builds for the loaded built-in model."""
    config = copy.deepcopy(engine.plan(preset).config)
    model = engine.model
    model._prepare_special_tokens(config, kwargs_has_attention_mask=True, device="cpu")
    config.max_length = config.max_new_tokens + 5
    processors = model._get_logits_processor(config, input_ids_seq_length=5, device="cpu")
    criteria = model._get_stopping_criteria(config, StoppingCriteriaList(), tokenizer=engine.tokenizer)
    return [type(p).__name__ for p in processors], [type(c).__name__ for c in criteria]


def names(described: list[str]) -> list[str]:
    return [d.split("(")[0] for d in described]


@pytest.mark.parametrize("name", ["greedy", "beam", "sampling", "chat", "creative", "precise", "beam-sampling",
                                  "prompt-lookup"])
def test_explain_lists_what_transformers_builds(builtin_engine, name):
    preset = presets.resolve(name)
    found = explain(preset)
    processors, criteria = built_by_transformers(builtin_engine, preset)
    assert names(found.processors) == processors
    assert names(found.criteria) == criteria
    assert found.strategy == preset.strategy


def test_explain_with_stop_strings_and_the_method_that_runs():
    preset = dataclasses.replace(presets.resolve("greedy"), generation={"do_sample": False, "stop_strings": ["END"]})
    found = explain(preset)
    assert names(found.criteria) == ["MaxLengthCriteria", "StopStringCriteria", "EosTokenCriteria"]
    assert found.runs == "greedy_search: transformers GenerationMixin._sample"
    assert found.processors == []
    assert "_assisted_decoding" in explain(presets.resolve("prompt-lookup")).runs


def test_explain_names_settings_the_strategy_ignores():
    greedy = dataclasses.replace(
        presets.resolve("greedy"), generation={"do_sample": False, "temperature": 0.7, "penalty_alpha": 0.5}
    )
    ignored = explain(greedy).ignored
    assert any(line.startswith("`temperature`") for line in ignored)
    assert any(line.startswith("`penalty_alpha`") and "contrastive" in line for line in ignored)
    assert explain(presets.resolve("chat")).ignored == []
    beams = dataclasses.replace(presets.resolve("beam"), generation={"num_beams": 4, "diversity_penalty": 0.5})
    assert any("diversity_penalty" in line for line in explain(beams).ignored)
