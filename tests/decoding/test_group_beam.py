"""Diverse (group) beam search: llmgen's loop against transformers 4.55's recorded output, outputs, batching."""

from __future__ import annotations

import pytest
from decoding_support import CountingStreamer, case_id, four_bit, generate, new_tokens, reference_cases
from tiny_model import TINY_4BIT_CONFIG, build_tiny
from transformers import GenerationConfig
from transformers.generation.utils import GenerateBeamDecoderOnlyOutput

from llmgen.decoding import DecodingSettingsError, decoding_loop

CASES = reference_cases("group_beam")
TINY_A, TINY_B = [1, 5, 17, 33, 8], [1, 40, 41, 12, 7, 66, 3, 90]
SETTINGS = {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "num_return_sequences": 2,
            "max_new_tokens": 12}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_transformers_455(case, model_named):
    output, width = generate(model_named(case["model"]), [case["prompt_ids"]], case["settings"])
    assert output.sequences[:, width:].tolist() == case["expected"]
    assert output.sequences_scores.tolist() == pytest.approx(case["sequences_scores"], abs=1e-5)


def test_output_carries_scores_and_beam_indices(tiny_models):
    output, width = generate(tiny_models["tiny"], [TINY_A], SETTINGS)
    assert isinstance(output, GenerateBeamDecoderOnlyOutput)
    assert output.sequences.shape[0] == output.sequences_scores.shape[0] == output.beam_indices.shape[0] == 2
    assert output.sequences_scores[0] >= output.sequences_scores[1]
    assert len(output.scores) == output.sequences.shape[1] - width <= 12


def test_diversity_penalty_spreads_the_groups(tiny_models):
    plain = new_tokens(tiny_models["tiny"], [TINY_A], {**SETTINGS, "diversity_penalty": 0.0})
    diverse = new_tokens(tiny_models["tiny"], [TINY_A], {**SETTINGS, "diversity_penalty": 5.0})
    assert diverse != plain


def test_left_padded_batch_rows_equal_their_own_runs(tiny_models):
    model = tiny_models["tiny"]
    batch = new_tokens(model, [TINY_A, TINY_B], SETTINGS)
    assert batch == new_tokens(model, [TINY_A], SETTINGS) + new_tokens(model, [TINY_B], SETTINGS)


def test_eos_ends_hypotheses_in_a_batch(tiny_models):
    model = tiny_models["tiny"]
    alone = new_tokens(model, [TINY_B], SETTINGS)
    eos = alone[0][3]
    settings = {**SETTINGS, "eos_token_id": eos}
    batch = new_tokens(model, [TINY_A, TINY_B], settings)
    assert batch == new_tokens(model, [TINY_A], settings) + new_tokens(model, [TINY_B], settings)
    assert any(eos in row for row in batch)


def test_does_not_stream_but_ends_the_streamer(tiny_models):
    streamer = CountingStreamer()
    generate(tiny_models["tiny"], [TINY_A], SETTINGS, streamer=streamer)
    assert len(streamer.puts) == 1 and streamer.ends == 1  # only generate's own put of the (expanded) prompt


def test_bad_group_settings_are_refused():
    with pytest.raises(DecodingSettingsError, match="num_beams \\(5\\) must be a multiple of num_beam_groups \\(2\\)"):
        decoding_loop(GenerationConfig(num_beams=5, num_beam_groups=2, diversity_penalty=1.0), None)


def test_only_the_three_strategies_get_a_loop():
    assert decoding_loop(GenerationConfig(do_sample=False), None) is None
    assert decoding_loop(GenerationConfig(num_beams=4), None) is None
    assert decoding_loop(GenerationConfig(do_sample=True), None) is None
    assert decoding_loop(GenerationConfig(penalty_alpha=0.5, top_k=4), CountingStreamer()) is not None


def test_four_bit_model_batches_consistently(tmp_path):
    pytest.importorskip("bitsandbytes")
    model = four_bit(build_tiny(TINY_4BIT_CONFIG, seed=2), tmp_path)
    batch = new_tokens(model, [TINY_A, TINY_B], SETTINGS)
    assert batch[:2] == new_tokens(model, [TINY_A], SETTINGS)
