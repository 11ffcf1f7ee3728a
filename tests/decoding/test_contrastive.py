"""Contrastive search: llmgen's loop against transformers 4.55's recorded output, and its behaviour in generate."""

from __future__ import annotations

import pytest
import torch
from decoding_support import CountingStreamer, case_id, four_bit, generate, new_tokens, reference_cases
from tiny_model import TINY_4BIT_CONFIG, build_tiny
from transformers import GenerationConfig

from llmgen.decoding import decoding_loop
from llmgen.decoding.contrastive import contrastive_search

CASES = reference_cases("contrastive")
TINY_A, TINY_B = [1, 5, 17, 33, 8], [1, 40, 41, 12, 7, 66, 3, 90]
SETTINGS = {"penalty_alpha": 0.6, "top_k": 4, "max_new_tokens": 20}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_transformers_455(case, model_named):
    assert new_tokens(model_named(case["model"]), [case["prompt_ids"]], case["settings"]) == case["expected"]


def test_chat_prompts_tokenize_as_recorded(smollm2):
    _, tokenizer = smollm2
    for case in CASES:
        prompt = case["prompt"]
        if prompt and "messages" in prompt:
            ids = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True)
            assert list(getattr(ids, "input_ids", ids)) == case["prompt_ids"]
        elif prompt:
            assert tokenizer(prompt["text"])["input_ids"] == case["prompt_ids"]


def test_left_padded_batch_rows_equal_their_own_runs(tiny_models):
    model = tiny_models["tiny"]
    batch = new_tokens(model, [TINY_A, TINY_B], SETTINGS)
    assert batch == [new_tokens(model, [TINY_A], SETTINGS)[0], new_tokens(model, [TINY_B], SETTINGS)[0]]


def test_eos_mid_batch_pads_the_finished_row(tiny_models):
    model = tiny_models["tiny"]
    alone = new_tokens(model, [TINY_A], SETTINGS)[0]
    eos = alone[3]  # make row A's fourth token the end of sequence
    settings = {**SETTINGS, "eos_token_id": eos}
    a, b = new_tokens(model, [TINY_A, TINY_B], settings)
    assert a[: a.index(eos) + 1] == alone[: alone.index(eos) + 1]
    assert set(a[a.index(eos) + 1 :]) <= {model.generation_config.pad_token_id}
    assert b == new_tokens(model, [TINY_B], settings)[0]


def test_max_new_tokens_and_scores(tiny_models):
    output, width = generate(tiny_models["tiny"], [TINY_A], {**SETTINGS, "max_new_tokens": 7})
    assert output.sequences.shape[1] - width == 7 == len(output.scores)
    assert output.past_key_values.get_seq_length() == output.sequences.shape[1] - 1


def test_stop_strings_end_generation(smollm2):
    model, tokenizer = smollm2
    prompt = tokenizer("The history of the printing press is")["input_ids"]
    full = new_tokens(model, [prompt], {**SETTINGS, "max_new_tokens": 16})[0]
    text = tokenizer.decode(full)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = new_tokens(model, [prompt], {**SETTINGS, "max_new_tokens": 16, "stop_strings": [stop]}, tokenizer=tokenizer)
    assert len(stopped[0]) < len(full) and full[: len(stopped[0])] == stopped[0]
    assert stop in tokenizer.decode(stopped[0])


def test_streams_each_token(tiny_models):
    streamer = CountingStreamer()
    output, width = generate(tiny_models["tiny"], [TINY_A], SETTINGS, streamer=streamer)
    assert streamer.puts[0] == TINY_A  # generate itself puts the prompt first
    assert [t for put in streamer.puts[1:] for t in put] == output.sequences[0, width:].tolist()
    assert len(streamer.puts) == 1 + SETTINGS["max_new_tokens"] and streamer.ends == 1


def test_reuses_the_kv_cache(tiny_models):
    """One prefill, then one forward of top_k one-token rows per new token: the prefix is never recomputed."""
    model = tiny_models["tiny"]
    shapes = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        new_tokens(model, [TINY_A], {**SETTINGS, "max_new_tokens": 5})
    finally:
        hook.remove()
    assert shapes == [(1, len(TINY_A))] + [(4, 1)] * 5


def test_penalty_alpha_zero_is_greedy(tiny_models):
    model = tiny_models["tiny"]
    config = GenerationConfig(penalty_alpha=0.0, top_k=4)
    assert decoding_loop(config, None) is None  # transformers runs it: greedy
    ids = torch.tensor([TINY_A])
    greedy = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12)
    ours = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, top_k=4,
                          penalty_alpha=0.0, custom_generate=contrastive_search)
    assert ours.tolist() == greedy.tolist()


def test_four_bit_model_runs_and_streams(tmp_path):
    pytest.importorskip("bitsandbytes")
    model = four_bit(build_tiny(TINY_4BIT_CONFIG, seed=2), tmp_path)
    streamer = CountingStreamer()
    output, width = generate(model, [TINY_A], SETTINGS, streamer=streamer)
    alone = output.sequences[0, width:].tolist()
    assert len(streamer.puts) == len(alone) + 1 > 1
    row = new_tokens(model, [TINY_A, TINY_B], SETTINGS)[0]
    assert row[: len(alone)] == alone and set(row[len(alone) :]) <= {model.generation_config.pad_token_id}
