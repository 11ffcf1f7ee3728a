"""The engine on real models: equal to bare generate, stop strings, seeds, batches, limits."""

from __future__ import annotations

import pytest
import torch

from llmgen import presets, strategies
from llmgen.engine import Request, Result
from llmgen.errors import UsageError

QUESTION = Request(prompt="What is the capital of France?")


def plan(engine, name: str = "greedy", **overrides):
    return engine.plan(presets.resolve(name), overrides)


def test_greedy_equals_bare_generate_token_for_token(builtin_engine) -> None:
    engine = builtin_engine
    ids = engine.encode(QUESTION)
    bare = engine.model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    result = engine.generate(QUESTION, plan(engine, max_new_tokens=16))
    assert result.token_ids == bare[0, len(ids):].tolist()
    assert result.prompt_tokens == len(ids)


def test_chat_template_is_applied_and_prompt_not_echoed(builtin_engine) -> None:
    ids = builtin_engine.encode(Request(prompt="Hi there", system="Be brief."))
    text = builtin_engine.tokenizer.decode(ids)
    assert "<|im_start|>system\nBe brief.<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    result = builtin_engine.generate(QUESTION, plan(builtin_engine, max_new_tokens=12))
    assert "capital of France?" not in result.text and "Paris" in result.text


def test_raw_skips_the_chat_template(builtin_engine) -> None:
    ids = builtin_engine.encode(Request(prompt="2+2=", raw=True))
    assert builtin_engine.tokenizer.decode(ids) == "2+2="


def test_streamed_text_equals_the_result_text(builtin_engine) -> None:
    pieces: list[str] = []
    result = builtin_engine.generate(
        Request(prompt="List three fruits, one per line."), plan(builtin_engine, max_new_tokens=30), pieces.append
    )
    assert len(pieces) > 3
    assert "".join(pieces) == result.text
    assert result.ttft_s is not None and 0 < result.ttft_s <= result.total_s


def test_stop_string_ends_generation_and_is_cut(builtin_engine) -> None:
    pieces: list[str] = []
    result = builtin_engine.generate(QUESTION, plan(builtin_engine, stop_strings=["Paris"]), pieces.append)
    assert result.finish_reason == "stop"
    assert result.text == "The capital of France is "
    assert "".join(pieces) == result.text


def test_finish_reasons_eos_and_length(builtin_engine) -> None:
    assert builtin_engine.generate(QUESTION, plan(builtin_engine, max_new_tokens=64)).finish_reason == "eos"
    short = builtin_engine.generate(QUESTION, plan(builtin_engine, max_new_tokens=3))
    assert short.finish_reason == "length" and short.completion_tokens == 3


def test_seed_makes_sampling_reproducible(tiny_engine) -> None:
    sampled = plan(tiny_engine, "sampling", max_new_tokens=12)
    runs = [tiny_engine.generate(QUESTION, tiny_engine.plan(presets.resolve("sampling"), {"max_new_tokens": 12},
                                                            seed=s)).token_ids for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    assert sampled.strategy == "sampling"


def test_the_plan_carries_its_strategy_row(tiny_engine) -> None:
    beam = plan(tiny_engine, "beam")
    assert beam.row is strategies.BEAM and beam.strategy == "beam" and beam.batches and not beam.streams
    lookup = plan(tiny_engine, "prompt-lookup")
    assert lookup.row is strategies.PROMPT_LOOKUP and lookup.streams and not lookup.batches
    assert not plan(tiny_engine, "sampling", num_return_sequences=2).streams
    with pytest.raises(UsageError, match="structured output"):
        plan(tiny_engine, force_words_ids=[[5]], num_beams=2)


def test_batch_rows_equal_their_single_runs(tiny_engine) -> None:
    requests = [Request(prompt="hello"), Request(prompt="a much longer prompt about many different things")]
    greedy = plan(tiny_engine, max_new_tokens=10)
    batched = tiny_engine.generate_batch(requests, greedy)
    assert [r.token_ids for r in batched] == [tiny_engine.generate(r, greedy).token_ids for r in requests]


def test_beams_return_every_sequence_with_scores_best_first(builtin_engine) -> None:
    result = builtin_engine.generate(QUESTION, plan(builtin_engine, "beam", num_return_sequences=3, max_new_tokens=8))
    assert len(result.texts) == 3 and len(result.scores) == 3
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.text == result.texts[0]


def test_empty_and_too_long_prompts_are_usage_errors(tiny_engine) -> None:
    with pytest.raises(UsageError, match="empty"):
        tiny_engine.encode(Request(prompt="  "))
    with pytest.raises(UsageError, match="longer than the model's context"):
        tiny_engine.generate(Request(prompt="word " * 600), plan(tiny_engine))


def test_max_new_tokens_is_shortened_to_fit_the_context(tiny_engine) -> None:
    request = Request(prompt="word " * 470)
    result = tiny_engine.generate(request, plan(tiny_engine, max_new_tokens=100))
    assert result.prompt_tokens + result.completion_tokens <= 512


def test_model_generation_config_is_the_lowest_layer(tiny_engine) -> None:
    tiny_engine.model.generation_config.repetition_penalty = 1.3
    try:
        assert plan(tiny_engine).config.repetition_penalty == 1.3
        assert plan(tiny_engine, repetition_penalty=1.0).config.repetition_penalty == 1.0
    finally:
        tiny_engine.model.generation_config.repetition_penalty = None


@pytest.mark.parametrize("name", sorted(presets.discover()))
def test_every_builtin_preset_runs_on_the_builtin_model(builtin_engine, name: str) -> None:
    the_plan = builtin_engine.plan(presets.resolve(name), {"max_new_tokens": 4}, seed=0)
    pieces: list[str] = []
    result = builtin_engine.generate(QUESTION, the_plan, pieces.append)
    assert 1 <= result.completion_tokens <= 4 * (the_plan.config.num_return_sequences or 1)
    assert result.text.strip()
    if the_plan.streams:
        assert "".join(pieces) == result.text


def test_a_result_serialises_in_one_place_usage_included() -> None:
    one = Result(text="Hi", token_ids=[5, 2], finish_reason="eos", prompt_tokens=7, total_s=1.0)
    assert one.as_dict() == {"text": "Hi", "token_ids": [5, 2], "finish_reason": "eos",
                             "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    beams = Result(text="a", token_ids=[1], finish_reason="eos", prompt_tokens=3, total_s=1.0, texts=["a", "b c"],
                   all_token_ids=[[1], [2, 3]], finish_reasons=["eos", "length"], scores=[-0.1, -0.5])
    obj = beams.as_dict()
    assert list(obj) == ["text", "token_ids", "texts", "scores", "finish_reason", "usage"]
    assert obj["token_ids"] == [[1], [2, 3]] and obj["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}
