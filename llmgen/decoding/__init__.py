"""Decoding loops llmgen runs itself, handed to `model.generate(custom_generate=...)`.

Transformers 5 moved contrastive search, DoLa and diverse (group) beam search out of the library into Hub code
that needs `trust_remote_code`; llmgen carries its own loops instead, token for token equal to what
transformers 4.55 produced. Importing this package is cheap: torch and transformers load only when a loop is asked for.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

__all__ = ["DecodingSettingsError", "decoding_loop", "stop_string_criteria"]


def __getattr__(name: str) -> type:
    if name == "DecodingSettingsError":
        from llmgen.decoding._common import DecodingSettingsError

        return DecodingSettingsError
    raise AttributeError(name)


def decoding_loop(generation_config: GenerationConfig, streamer: BaseStreamer | None) -> Callable | None:
    """The llmgen loop for the strategy this config selects (contrastive, DoLa, group beam), ready to pass as
    `model.generate(custom_generate=...)`, with the streamer bound; None when transformers runs the mode itself.

    `generate` does not forward `streamer` to a callable `custom_generate`, hence the binding here (it still puts
    the prompt ids to the streamer once before the loop starts). Settings the loop cannot run with raise
    `DecodingSettingsError`, a `ValueError` with a one-line message; those that depend on the model (DoLa layer
    indices) are checked when the loop starts, before any token is generated.
    """
    from transformers.generation.configuration_utils import GenerationMode

    mode = generation_config.get_generation_mode()
    if mode == GenerationMode.CONTRASTIVE_SEARCH:
        from llmgen.decoding.contrastive import check_settings, contrastive_search as loop
    elif mode == GenerationMode.DOLA_GENERATION:
        from llmgen.decoding.dola import check_settings, dola_decoding as loop
    elif mode == GenerationMode.GROUP_BEAM_SEARCH:
        from llmgen.decoding.group_beam import check_settings, group_beam_search as loop
    else:
        return None
    check_settings(generation_config)
    return functools.partial(loop, streamer=streamer) if streamer is not None else loop


def stop_string_criteria(
    generation_config: GenerationConfig, tokenizer: PreTrainedTokenizerBase
) -> tuple[GenerationConfig, StoppingCriteriaList | None]:
    """The config without `stop_strings`, and those stop strings as stopping criteria to pass to `generate`.

    With a callable `custom_generate`, transformers 5 drops the `tokenizer` argument before it builds the stop-string
    criterion, so stop strings left in the config raise there. Pass the returned list as `stopping_criteria=`.
    """
    import copy

    from transformers import StoppingCriteriaList, StopStringCriteria

    stops = generation_config.stop_strings
    if not stops:
        return generation_config, None
    config = copy.deepcopy(generation_config)
    config.stop_strings = None
    return config, StoppingCriteriaList([StopStringCriteria(tokenizer=tokenizer, stop_strings=stops)])
