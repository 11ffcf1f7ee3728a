"""DoLa: llmgen's loop against transformers 4.55's recorded output, layer choice, errors, batching, streaming."""

from __future__ import annotations

import pytest
import torch
from decoding_support import CountingStreamer, case_id, four_bit, generate, new_tokens, reference_cases
from tiny_model import TINY_4BIT_CONFIG, build_tiny

from llmgen.decoding import DecodingSettingsError, decoding_loop
from llmgen.decoding.dola import premature_layers
from transformers import GenerationConfig

CASES = reference_cases("dola")
TINY_A, TINY_B = [1, 5, 17, 33, 8], [1, 40, 41, 12, 7, 66, 3, 90]
SETTINGS = {"dola_layers": [1, 3], "repetition_penalty": 1.2, "max_new_tokens": 16}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_transformers_455(case, model_named):
    assert new_tokens(model_named(case["model"]), [case["prompt_ids"]], case["settings"]) == case["expected"]


def test_premature_layers_skip_the_embeddings_when_tied():
    assert premature_layers("low", 30, tied_embeddings=True) == [2, 4, 6, 8, 10, 12, 14]
    assert premature_layers("low", 30, tied_embeddings=False)[0] == 0
    assert premature_layers("high", 30, tied_embeddings=True) == [15, 17, 19, 21, 23, 25, 27, 29]
    assert premature_layers("low", 2, tied_embeddings=True) == [1]


def test_out_of_range_layer_is_a_clear_error(tiny_models):
    with pytest.raises(ValueError, match=r"dola_layers index 40 is out of range: the model has 4 layers"):
        new_tokens(tiny_models["tiny"], [TINY_A], {"dola_layers": [1, 40], "max_new_tokens": 4})


def test_malformed_layers_are_refused_before_loading_anything():
    with pytest.raises(DecodingSettingsError, match="dola_layers must be"):
        decoding_loop(GenerationConfig(dola_layers="middle"), None)


@pytest.mark.parametrize("dola_layers", ["high", [1, 3]])
def test_left_padded_batch_rows_equal_their_own_runs(tiny_models, dola_layers):
    model, settings = tiny_models["tiny"], {**SETTINGS, "dola_layers": dola_layers}
    batch = new_tokens(model, [TINY_A, TINY_B], settings)
    assert batch == [new_tokens(model, [TINY_A], settings)[0], new_tokens(model, [TINY_B], settings)[0]]


def test_eos_mid_batch_pads_the_finished_row(tiny_models):
    model = tiny_models["tiny"]
    alone = new_tokens(model, [TINY_B], SETTINGS)[0]
    eos = alone[2]
    settings = {**SETTINGS, "eos_token_id": eos}
    a, b = new_tokens(model, [TINY_A, TINY_B], settings)
    assert b[: b.index(eos) + 1] == alone[: alone.index(eos) + 1]
    assert set(b[b.index(eos) + 1 :]) <= {model.generation_config.pad_token_id}
    assert a == new_tokens(model, [TINY_A], settings)[0]


def test_max_new_tokens_scores_and_raw_logits(tiny_models):
    output, width = generate(tiny_models["tiny"], [TINY_A], {**SETTINGS, "max_new_tokens": 6}, output_logits=True)
    assert output.sequences.shape[1] - width == 6 == len(output.scores) == len(output.logits)


def test_stop_strings_end_generation(smollm2):
    model, tokenizer = smollm2
    prompt = tokenizer("The history of the printing press is")["input_ids"]
    settings = {"dola_layers": "high", "repetition_penalty": 1.2, "max_new_tokens": 14}
    full = new_tokens(model, [prompt], settings)[0]
    text = tokenizer.decode(full)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = new_tokens(model, [prompt], {**settings, "stop_strings": [stop]}, tokenizer=tokenizer)[0]
    assert len(stopped) < len(full) and full[: len(stopped)] == stopped and stop in tokenizer.decode(stopped)


def test_streams_each_token(tiny_models):
    streamer = CountingStreamer()
    output, width = generate(tiny_models["tiny"], [TINY_A], SETTINGS, streamer=streamer)
    assert [t for put in streamer.puts[1:] for t in put] == output.sequences[0, width:].tolist()
    assert len(streamer.puts) == 1 + SETTINGS["max_new_tokens"] and streamer.ends == 1


def test_sampling_follows_the_seed(tiny_models):
    settings = {**SETTINGS, "do_sample": True, "top_k": 20}
    torch.manual_seed(3)
    first = new_tokens(tiny_models["tiny"], [TINY_A], settings)
    torch.manual_seed(3)
    assert new_tokens(tiny_models["tiny"], [TINY_A], settings) == first


def test_four_bit_model_runs_and_streams(tmp_path):
    pytest.importorskip("bitsandbytes")
    model = four_bit(build_tiny(TINY_4BIT_CONFIG, seed=2), tmp_path)
    streamer = CountingStreamer()
    output, width = generate(model, [TINY_A], SETTINGS, streamer=streamer)
    alone = output.sequences[0, width:].tolist()
    assert len(streamer.puts) == len(alone) + 1 > 1
    row = new_tokens(model, [TINY_A, TINY_B], SETTINGS)[0]
    assert row[: len(alone)] == alone and set(row[len(alone) :]) <= {model.generation_config.pad_token_id}
