"""What every llmgen decoding loop must do, run for each: the 4.55 references, batching, limits, streaming, refusals.

Each loop's own behaviour (its search, its extra outputs) is in test_contrastive.py, test_dola.py, test_group_beam.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tests.decoding.decoding_support import (
    LOOPS,
    TINY_A,
    TINY_B,
    CountingStreamer,
    case_id,
    four_bit,
    generate,
    new_tokens,
    reference,
    reference_cases,
    unpadded,
)
from tests.decoding.tiny_model import TINY_4BIT_CONFIG, build_tiny
from transformers import GenerationConfig

from llmgen.decoding import DecodingSettingsError, check_settings, decoding_loop

CASES = [(loop, case) for loop in LOOPS for case in reference_cases(loop.reference)]


@pytest.mark.parametrize(("loop", "case"), CASES, ids=[f"{loop}-{case_id(case)}" for loop, case in CASES])
def test_matches_transformers_455(loop, case, model_named):
    output, width = generate(model_named(case["model"]), [case["prompt_ids"]], case["settings"])
    assert output.sequences[:, width:].tolist() == case["expected"]
    if "sequences_scores" in case:
        assert output.sequences_scores.tolist() == pytest.approx(case["sequences_scores"], abs=1e-5)


def test_reference_prompts_tokenize_as_recorded(smollm2):
    _, tokenizer = smollm2
    for case in reference()["cases"]:
        prompt = case["prompt"]
        if prompt and "messages" in prompt:
            ids = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True)
            assert list(getattr(ids, "input_ids", ids)) == case["prompt_ids"]
        elif prompt:
            assert tokenizer(prompt["text"])["input_ids"] == case["prompt_ids"]


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_left_padded_batch_rows_equal_their_own_runs(tiny_models, loop):
    model = tiny_models["tiny"]
    batch = new_tokens(model, [TINY_A, TINY_B], loop.settings)
    assert batch == new_tokens(model, [TINY_A], loop.settings) + new_tokens(model, [TINY_B], loop.settings)


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_eos_mid_batch_ends_that_row_only(tiny_models, loop):
    model, pad = tiny_models["tiny"], tiny_models["tiny"].generation_config.pad_token_id
    prompts = [TINY_A, TINY_B]
    which, position = loop.eos_from
    eos = new_tokens(model, [prompts[which]], loop.settings)[0][position]
    settings = {**loop.settings, "eos_token_id": eos}
    batch = new_tokens(model, prompts, settings)
    alone = new_tokens(model, [TINY_A], settings) + new_tokens(model, [TINY_B], settings)
    assert [unpadded(row, pad) for row in batch] == [unpadded(row, pad) for row in alone]
    ended = [row for row in batch if eos in row]
    assert ended and all(set(row[row.index(eos) + 1 :]) <= {pad} for row in ended)
    if loop.row.streams:  # one sequence per prompt: it is the run without eos, cut at eos
        alone = new_tokens(model, [prompts[which]], loop.settings)[0]
        row = batch[which]
        assert row[: row.index(eos) + 1] == alone[: alone.index(eos) + 1]


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_max_new_tokens_and_one_score_and_raw_logit_per_step(tiny_models, loop):
    settings = {**loop.settings, "max_new_tokens": 6, "eos_token_id": None}  # nothing ends before the limit
    output, width = generate(tiny_models["tiny"], [TINY_A], settings, output_logits=True)
    assert output.sequences.shape[1] - width == 6 == len(output.scores) == len(output.logits)


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_stop_strings_end_generation(smollm2, loop):
    model, tokenizer = smollm2
    prompt = tokenizer("The history of the printing press is")["input_ids"]
    full = new_tokens(model, [prompt], loop.builtin_settings)[0]
    text = tokenizer.decode(full)
    stop = loop.builtin_stop or text[len(text) // 2 : len(text) // 2 + 3]
    stopped = new_tokens(model, [prompt], {**loop.builtin_settings, "stop_strings": [stop]}, tokenizer=tokenizer)[0]
    assert len(stopped) < len(full) and stop in tokenizer.decode(stopped)
    if loop.row.streams:
        assert full[: len(stopped)] == stopped


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_streams_one_chunk_per_token_or_none_and_ends_once(tiny_models, loop):
    streamer = CountingStreamer()
    output, width = generate(tiny_models["tiny"], [TINY_A], loop.settings, streamer=streamer)
    assert streamer.puts[0] == TINY_A * loop.settings.get("num_beams", 1)  # generate's own, once per beam
    chunks = streamer.puts[1:]
    if loop.row.streams:
        assert [t for put in chunks for t in put] == output.sequences[0, width:].tolist()
        assert len(chunks) == output.sequences.shape[1] - width == loop.settings["max_new_tokens"]
    else:
        assert chunks == []
    assert streamer.ends == 1


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_settings_it_cannot_run_are_refused_before_and_when_it_starts(tiny_models, loop):
    config = GenerationConfig(**loop.refused)
    with pytest.raises(DecodingSettingsError, match=loop.refusal):
        check_settings(loop.row, config)
    streamer = CountingStreamer()
    with pytest.raises(DecodingSettingsError, match=loop.refusal):
        generate(tiny_models["tiny"], [TINY_A], {**loop.refused, "max_new_tokens": 4}, streamer=streamer)
    assert streamer.puts[1:] == [] and streamer.ends == 0


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_encoder_decoder_models_are_refused(loop):
    run = decoding_loop(GenerationConfig(**loop.settings), None)
    model = SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=True))
    with pytest.raises(DecodingSettingsError, match=f"{loop.row.title} runs on decoder-only models"):
        run(model, None, None, None, GenerationConfig(**loop.settings))


@pytest.mark.parametrize("loop", LOOPS, ids=str)
def test_four_bit_model_batches_and_streams(tmp_path, loop):
    pytest.importorskip("bitsandbytes")
    model = four_bit(build_tiny(TINY_4BIT_CONFIG, seed=2), tmp_path)
    pad = model.generation_config.pad_token_id
    streamer = CountingStreamer()
    output, width = generate(model, [TINY_A], loop.settings, streamer=streamer)
    alone = output.sequences[:, width:].tolist()
    assert len(streamer.puts) == (len(alone[0]) + 1 if loop.row.streams else 1) and streamer.ends == 1
    rows = new_tokens(model, [TINY_A, TINY_B], loop.settings)[: len(alone)]
    assert [unpadded(row, pad) for row in rows] == [unpadded(row, pad) for row in alone]


def test_only_rows_with_a_loop_get_one():
    assert decoding_loop(GenerationConfig(do_sample=False), None) is None
    assert decoding_loop(GenerationConfig(num_beams=4), None) is None
    assert decoding_loop(GenerationConfig(do_sample=True), None) is None
    assert decoding_loop(GenerationConfig(prompt_lookup_num_tokens=3), None) is None
    for loop in LOOPS:
        assert decoding_loop(GenerationConfig(**loop.settings), CountingStreamer()) is not None
