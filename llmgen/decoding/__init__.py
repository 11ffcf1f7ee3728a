"""Decoding loops llmgen runs itself, handed to `model.generate(custom_generate=...)`.

Transformers 5 moved contrastive search, DoLa and diverse (group) beam search out of the library into Hub code
that needs `trust_remote_code`; llmgen carries its own loops instead, token for token equal to what
transformers 4.55 produced. A strategy's row in `llmgen.strategies` names its loop here. Importing this package is
cheap: torch and transformers load only when a loop is asked for.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Callable

from llmgen import strategies
from llmgen.strategies import Strategy

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

__all__ = ["DecodingSettingsError", "check_settings", "decoding_loop", "stop_string_criteria"]


def __getattr__(name: str) -> type:
    if name == "DecodingSettingsError":
        from llmgen.decoding._common import DecodingSettingsError

        return DecodingSettingsError
    raise AttributeError(name)


def decoding_loop(generation_config: GenerationConfig, streamer: BaseStreamer | None) -> Callable | None:
    """llmgen's own loop for the strategy this config selects, ready to pass as `model.generate(custom_generate=...)`
    with the streamer bound; None when transformers runs the mode itself.

    `generate` does not forward `streamer` to a callable `custom_generate`, hence the binding here (it still puts
    the prompt ids to the streamer once before the loop starts). The loop checks its settings when it starts
    (`check_settings` does so beforehand, without a model).
    """
    loop = _loop_of(strategies.by_mode(generation_config.get_generation_mode().value))
    if loop is None or streamer is None:
        return loop
    return functools.partial(loop, streamer=streamer)


def check_settings(row: Strategy, generation_config: GenerationConfig) -> None:
    """Refuse settings the strategy's own loop cannot run with (`DecodingSettingsError`, a one-line message).

    Those that depend on the model (DoLa layer indices) are checked when the loop starts, before any token.
    """
    loop = _loop_of(row)
    if loop is not None:
        loop.check_settings(generation_config)


def _loop_of(row: Strategy) -> Callable | None:
    if row.loop is None:
        return None
    module, function = row.loop.split(":")
    return getattr(importlib.import_module(module), function)


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
