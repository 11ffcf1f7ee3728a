"""Contrastive search beyond the loop contract (test_loop_contract.py): its cache use, and alpha 0 being greedy."""

from __future__ import annotations

import torch
from tests.decoding.decoding_support import CONTRASTIVE, TINY_A, generate, new_tokens
from transformers import GenerationConfig

from llmgen.decoding import decoding_loop
from llmgen.decoding.contrastive import contrastive_search

SETTINGS = CONTRASTIVE.settings


def test_returned_cache_holds_every_token_but_the_last(tiny_models):
    output, width = generate(tiny_models["tiny"], [TINY_A], {**SETTINGS, "max_new_tokens": 7})
    assert output.sequences.shape[1] - width == 7
    assert output.past_key_values.get_seq_length() == output.sequences.shape[1] - 1


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
