"""Fixtures for the decoding loops: the built-in model, and the tiny random Llamas of the 4.55 reference."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2(builtin_engine):
    """The built-in SmolLM2-135M-Instruct, float32 on the CPU, through llmgen's loader: (model, tokenizer)."""
    return builtin_engine.model, builtin_engine.tokenizer


@pytest.fixture(scope="session")
def tiny_models():
    """The tiny random Llamas the reference fixture names, rebuilt from their config and seed."""
    from tests.decoding.decoding_support import reference
    from tests.decoding.tiny_model import build_tiny

    return {name: build_tiny(spec["config"], spec["seed"]) for name, spec in reference()["tiny_models"].items()}


@pytest.fixture
def model_named(request, tiny_models):
    """Look a reference model up by name; the built-in one loads only when a test asks for it."""
    return lambda name: request.getfixturevalue("smollm2")[0] if name == "smollm2" else tiny_models[name]
