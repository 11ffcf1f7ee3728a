"""Diverse (group) beam search beyond the loop contract (test_loop_contract.py): its beam outputs and diversity."""

from __future__ import annotations

from tests.decoding.decoding_support import GROUP_BEAM, TINY_A, generate, new_tokens
from transformers.generation.utils import GenerateBeamDecoderOnlyOutput

SETTINGS = GROUP_BEAM.settings


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
