"""A tiny random Llama whose weights come from a seed alone, identical under transformers 4.55 and 5.x.

Weights are drawn by our own generator in parameter-name order, not by transformers' initialisers (which changed
between versions), so the reference recorder (bench/record_reference.py, run under 4.55) and the tests build the
same model from the config and seed stored in the fixture.
"""

from __future__ import annotations

from typing import Any

import torch

TINY_CONFIG: dict[str, Any] = {
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
}

# bitsandbytes quantises in blocks of 64 values, so the 4-bit tests need layers at least that wide.
TINY_4BIT_CONFIG: dict[str, Any] = {**TINY_CONFIG, "hidden_size": 64, "intermediate_size": 128}


def build_tiny(config: dict[str, Any] | None = None, seed: int = 0) -> torch.nn.Module:
    """The tiny Llama for `config` (defaults to TINY_CONFIG) with weights drawn from `seed`, in float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = dict(config or TINY_CONFIG)
    model = LlamaForCausalLM(LlamaConfig(**settings)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(noise / param.shape[-1] ** 0.5 * (4.0 if "embed" in name else 1.5))
    return model
