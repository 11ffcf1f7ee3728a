"""A tiny local model directory, to load as a draft model."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_engine) -> Path:
    """The tiny random Llama saved as a local model directory (safetensors), usable as --model/--assistant."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_engine.model.save_pretrained(path, safe_serialization=True)
    tiny_engine.tokenizer.save_pretrained(path)
    return path
