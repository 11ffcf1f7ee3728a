"""DoLa beyond the loop contract (test_loop_contract.py): which layers it contrasts, layer errors, sampling."""

from __future__ import annotations

import pytest
import torch
from tests.decoding.decoding_support import DOLA, TINY_A, TINY_B, new_tokens

from llmgen.decoding import DecodingSettingsError
from llmgen.decoding.dola import premature_layers

SETTINGS = DOLA.settings


def test_premature_layers_skip_the_embeddings_when_tied():
    assert premature_layers("low", 30, tied_embeddings=True) == [2, 4, 6, 8, 10, 12, 14]
    assert premature_layers("low", 30, tied_embeddings=False)[0] == 0
    assert premature_layers("high", 30, tied_embeddings=True) == [15, 17, 19, 21, 23, 25, 27, 29]
    assert premature_layers("low", 2, tied_embeddings=True) == [1]


def test_out_of_range_layer_is_a_clear_error_when_the_loop_starts(tiny_models):
    with pytest.raises(DecodingSettingsError, match=r"dola_layers index 40 is out of range: the model has 4 layers"):
        new_tokens(tiny_models["tiny"], [TINY_A], {"dola_layers": [1, 40], "max_new_tokens": 4})


def test_the_layer_is_picked_per_row_so_batch_rows_equal_their_own_runs_with_named_layers_too(tiny_models):
    model, settings = tiny_models["tiny"], {**SETTINGS, "dola_layers": "high"}
    batch = new_tokens(model, [TINY_A, TINY_B], settings)
    assert batch == [new_tokens(model, [TINY_A], settings)[0], new_tokens(model, [TINY_B], settings)[0]]


def test_sampling_follows_the_seed(tiny_models):
    settings = {**SETTINGS, "do_sample": True, "top_k": 20}
    torch.manual_seed(3)
    first = new_tokens(tiny_models["tiny"], [TINY_A], settings)
    torch.manual_seed(3)
    assert new_tokens(tiny_models["tiny"], [TINY_A], settings) == first
