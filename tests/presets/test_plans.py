"""Plans: the one function that merges and validates settings layers, run before a model loads and by the engine."""

from __future__ import annotations

import pytest

from llmgen import plans, presets
from llmgen.errors import UsageError
from llmgen.options import ModelOptions, Options, Session


def test_layers_merge_lowest_first_and_each_source_is_named() -> None:
    greedy = presets.load("greedy")
    plan = plans.plan(greedy, {"max_new_tokens": 3}, base={"max_new_tokens": 9, "repetition_penalty": 1.2}, seed=4)
    assert (plan.config.max_new_tokens, plan.config.repetition_penalty, plan.seed) == (3, 1.2, 4)
    assert plan.strategy == "greedy" and plan.preset == "greedy"
    with pytest.raises(UsageError, match=r"^params: top_k: Input should be greater than or equal to 0"):
        plans.plan(greedy, {"top_k": -1}, source="params")
    with pytest.raises(UsageError, match=r"^settings: unknown generation setting 'temprature'"):
        plans.plan(greedy, {"temprature": 0.5})
    with pytest.raises(UsageError, match=r"^invalid generation settings: .*num_return_sequences"):
        plans.plan(greedy, {"num_return_sequences": 3})


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("the model loaded before the input was checked")

    monkeypatch.setattr(ModelOptions, "load", refuse)


@pytest.mark.parametrize(
    ("flags", "assistant", "message"),
    [
        ({"set": ["top_pp=0.5"]}, None, r"^command line: unknown generation setting 'top_pp' \(did you mean 'top_p'"),
        ({"preset": "beam", "num_return_sequences": 5}, None, r"^command line: .*num_return_sequences"),
        ({"preset": "contrastive", "set": ["use_cache=false"]}, None, r"^contrastive search needs use_cache=true$"),
        ({"set": ["force_words_ids=[[5]]"], "num_beams": 2}, None, r"^llmgen does not run constrained beam search"),
        ({"preset": "beam"}, "builtin", r"^preset beam: assisted decoding works with greedy or sampling, not beams$"),
    ],
)
def test_a_session_plans_the_command_line_before_the_model_loads(no_model, flags, assistant, message) -> None:
    with pytest.raises(UsageError, match=message):
        Session.open(Options(**flags), lambda defaults: defaults.preset, assistant=assistant)
