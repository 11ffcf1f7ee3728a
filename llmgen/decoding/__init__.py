"""Decoding loops llmgen runs itself, handed to `model.generate(custom_generate=...)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from llmgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer


def decoding_loop(generation_config: GenerationConfig, streamer: BaseStreamer | None) -> Callable | None:
    """The llmgen loop for the strategy this config selects; None when transformers runs it itself."""
    from transformers.generation.configuration_utils import GenerationMode

    mode = generation_config.get_generation_mode()
    if mode in (GenerationMode.CONTRASTIVE_SEARCH, GenerationMode.DOLA_GENERATION, GenerationMode.GROUP_BEAM_SEARCH):
        raise UsageError(f"{mode.value} is not available yet")
    return None
