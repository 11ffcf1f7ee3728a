"""Inspection, n-best beams, assisted and prompt-lookup decoding, and compare runs, on the built-in model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from llmgen import compare, presets
from llmgen.engine import Engine, Request
from llmgen.config import Defaults
from llmgen.options import Session

N = 8
# A prompt whose answer copies from it, so prompt lookup finds drafts the model accepts.
COPY_PROMPT = "Repeat exactly: the quick brown fox jumps over the lazy dog."


def forward_logprobs(engine: Engine, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Log-softmax of the model's logits at each completion position: a plain forward pass, no generate."""
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([prompt + completion])).logits[0].float()
    return logits[len(prompt) - 1 : -1].log_softmax(-1)


@pytest.fixture(scope="module")
def prompt(builtin_engine) -> list[int]:
    return builtin_engine.encode(Request(prompt="Name three colours."))


def plan(engine: Engine, name: str, seed: int | None = None, **settings):
    return engine.plan(presets.resolve(name), {"max_new_tokens": N, **settings}, seed=seed)


@pytest.mark.parametrize("name", ["greedy", "sampling", "beam"])
def test_inspected_probabilities_agree_with_a_forward_pass(builtin_engine, prompt, name):
    result = builtin_engine.generate(prompt, plan(builtin_engine, name, seed=5), inspect=3)
    assert [t.id for t in result.tokens] == result.token_ids and len(result.tokens) == N
    reference = forward_logprobs(builtin_engine, prompt, result.token_ids)
    for step, token in enumerate(result.tokens):
        assert token.logprob == pytest.approx(reference[step, token.id].item(), abs=2e-3)
        top = reference[step].topk(3)
        assert [a.id for a in token.alternatives] == top.indices.tolist()
        assert [a.logprob for a in token.alternatives] == pytest.approx(top.values.tolist(), abs=2e-3)
        assert token.text == builtin_engine.tokenizer.decode([token.id])
    scored = builtin_engine.score(prompt, result.token_ids)
    assert scored == pytest.approx([t.logprob for t in result.tokens], abs=2e-3)


def test_greedy_tokens_are_their_steps_top_alternative(builtin_engine, prompt):
    result = builtin_engine.generate(prompt, plan(builtin_engine, "greedy"), inspect=1)
    assert all(t.alternatives[0].id == t.id for t in result.tokens)
    assert all(0 < math.exp(t.logprob) <= 1 for t in result.tokens)


def test_n_best_gives_k_distinct_beams_best_first(builtin_engine, prompt):
    result = builtin_engine.generate(prompt, plan(builtin_engine, "beam", num_beams=4, num_return_sequences=3))
    assert len(result.texts) == len(result.scores) == len(result.all_token_ids) == 3
    assert len({tuple(ids) for ids in result.all_token_ids}) == 3
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.text == result.texts[0]


def test_prompt_lookup_equals_greedy_token_for_token_and_counts_drafts(builtin_engine):
    ids = builtin_engine.encode(Request(prompt=COPY_PROMPT))
    greedy = builtin_engine.generate(ids, plan(builtin_engine, "greedy", max_new_tokens=16))
    lookup = builtin_engine.generate(ids, plan(builtin_engine, "prompt-lookup", max_new_tokens=16))
    assert lookup.token_ids == greedy.token_ids
    drafts = lookup.extra["drafts"]
    assert 0 < drafts.accepted <= drafts.drafted
    assert "drafts" not in greedy.extra


@pytest.mark.parametrize("assistant", ["builtin", "tiny"])
def test_assisted_greedy_equals_greedy_token_for_token(builtin_engine, prompt, tiny_dir, assistant):
    spec = "builtin" if assistant == "builtin" else str(tiny_dir)
    greedy = builtin_engine.generate(prompt, plan(builtin_engine, "greedy", max_new_tokens=12))
    preset = dataclasses.replace(presets.resolve("greedy"), assistant_model=spec)
    assisted_plan = builtin_engine.plan(preset, {"max_new_tokens": 12})
    assert assisted_plan.strategy == "assisted"
    assisted = builtin_engine.generate(prompt, assisted_plan, inspect=0)
    assert assisted.token_ids == greedy.token_ids
    assert [t.id for t in assisted.tokens] == greedy.token_ids
    drafts = assisted.extra["drafts"]
    assert drafts.drafted > 0 and 0 <= drafts.accepted <= drafts.drafted
    if assistant == "builtin":  # the same weights draft exactly what the model would say
        assert drafts.accepted == drafts.drafted
    assert builtin_engine.assistant(spec) is builtin_engine.assistant(spec)  # loaded once


def test_assistant_with_beams_is_refused(builtin_engine):
    from llmgen.errors import UsageError

    with pytest.raises(UsageError, match="not beams"):
        builtin_engine.plan(dataclasses.replace(presets.resolve("beam"), assistant_model="builtin"))


def test_compare_runs_every_strategy_preset_and_measures_each_output(builtin_engine):
    names = compare.default_presets()
    assert names[0] == "greedy"
    assert {"greedy", "beam", "sampling", "beam-sampling", "prompt-lookup"} <= set(names)
    assert not {"chat", "creative", "precise"} & set(names)  # tunings of sampling, not strategies
    session = Session(builtin_engine, presets.resolve("greedy"), {"max_new_tokens": N}, None, Defaults())
    request = Request(prompt="Say hello.")
    comparison = compare.run(session, request, compare.choose(None, None), seed=11)
    outcomes = comparison.outcomes
    assert not comparison.interrupted and not comparison.not_run
    assert [o.preset for o in outcomes] == names
    assert [o.strategy for o in outcomes] == [presets.resolve(n).strategy for n in names]
    prompt_ids = builtin_engine.encode(request)
    for outcome in outcomes:
        m, ids = outcome.measures(), outcome.result.token_ids
        assert m["new_tokens"] == len(ids) <= N
        assert m["distinct_1"] == round(len(set(ids)) / len(ids), 4)
        assert m["mean_logprob"] == pytest.approx(
            forward_logprobs(builtin_engine, prompt_ids, ids).gather(-1, torch.tensor(ids)[:, None]).mean().item(),
            abs=1e-3,
        )
    by_name = {o.preset: o for o in outcomes}
    assert by_name["prompt-lookup"].result.token_ids == by_name["greedy"].result.token_ids
    again = compare.run(session, request, compare.choose("sampling", None), seed=11).outcomes
    assert again[0].result.token_ids == by_name["sampling"].result.token_ids  # --seed repeats sampling


def test_inspect_under_dola_reports_the_premature_layer_of_each_step(builtin_engine, prompt):
    result = builtin_engine.generate(prompt, plan(builtin_engine, "dola"), inspect=0)
    high = set(range(15, 30, 2))  # dola_layers "high" on the 30-layer built-in model
    layers = [t.dola_layer for t in result.tokens]
    assert len(layers) == N and set(layers) <= high
    assert all("dola_layer" in t.as_dict() for t in result.tokens)
