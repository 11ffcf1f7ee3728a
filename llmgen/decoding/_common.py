"""Pieces llmgen's own decoding loops share: the wrapper every loop runs in, the forward step, output records.

The loops follow the shape of transformers 5's own `_sample`: `generate` has already prepared the cache, the
attention mask, position ids, logits processors and stopping criteria; a loop only prefills, steps and picks tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from llmgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    from llmgen.strategies import Strategy


class DecodingSettingsError(UsageError):
    """Generation settings a decoding loop cannot run with: bad input (exit 2), one line meant for the user.

    Raised when a plan is made and, for what depends on the model (DoLa layer indices), when the loop starts.
    """


CACHE_NAMES = ("past_key_values", "cache_params")
SettingsCheck = Callable[["GenerationConfig"], None]


def custom_loop(strategy: Strategy, check_settings: SettingsCheck) -> Callable[[Callable], Callable]:
    """Make a loop body the `custom_generate` callable for `strategy`, with what every loop does first and last.

    First, refuse encoder-decoder models and settings the loop cannot run with: `check_settings` runs once per call,
    here, and hangs on the loop as `check_settings` so that a plan can be refused before any model runs. Last, end
    the streamer once the body has returned. The body takes the loop's arguments but `synced_gpus` (unsupported).
    """

    def wrap(body: Callable) -> Callable:
        @functools.wraps(body)
        def loop(
            model: PreTrainedModel,
            input_ids: torch.LongTensor,
            logits_processor: LogitsProcessorList,
            stopping_criteria: StoppingCriteriaList,
            generation_config: GenerationConfig,
            synced_gpus: bool = False,
            streamer: BaseStreamer | None = None,
            **model_kwargs: Any,
        ) -> Any:
            if model.config.is_encoder_decoder:
                raise DecodingSettingsError(
                    f"{strategy.title} runs on decoder-only models; {type(model).__name__} is encoder-decoder"
                )
            check_settings(generation_config)
            output = body(
                model, input_ids, logits_processor, stopping_criteria, generation_config,
                streamer=streamer, **model_kwargs,
            )
            if streamer is not None:
                streamer.end()
            return output

        loop.check_settings = check_settings
        return loop

    return wrap


def prefill(model: PreTrainedModel, input_ids: torch.LongTensor, config: GenerationConfig, model_kwargs: dict) -> Any:
    """The prompt forward, exactly as transformers' own loops run it (cache continuation and chunking included)."""
    return model._prefill(input_ids, config, model_kwargs)


def decode_step(model: PreTrainedModel, input_ids: torch.LongTensor, model_kwargs: dict) -> Any:
    """One forward over the newest token of every row, reusing the cache in `model_kwargs`."""
    inputs = model.prepare_inputs_for_generation(input_ids, next_sequence_length=1, **model_kwargs)
    return model(**inputs, return_dict=True)


def advance(model: PreTrainedModel, outputs: Any, model_kwargs: dict) -> dict:
    """Grow the attention mask and position ids by one token and keep the cache the forward returned."""
    return model._update_model_kwargs_for_generation(
        outputs, model_kwargs, is_encoder_decoder=model.config.is_encoder_decoder
    )


def cache_of(model_kwargs: dict) -> Any:
    return next((model_kwargs[name] for name in CACHE_NAMES if model_kwargs.get(name) is not None), None)


@dataclass
class Records:
    """What `return_dict_in_generate` asked to keep, per step, like `_sample` keeps it."""

    config: GenerationConfig
    scores: tuple | None = field(init=False)
    logits: tuple | None = field(init=False)
    attentions: tuple | None = field(init=False)
    hidden_states: tuple | None = field(init=False)

    def __post_init__(self) -> None:
        keep = bool(self.config.return_dict_in_generate)
        self.scores = () if keep and self.config.output_scores else None
        self.logits = () if keep and self.config.output_logits else None
        self.attentions = () if keep and self.config.output_attentions else None
        self.hidden_states = () if keep and self.config.output_hidden_states else None

    def add(self, scores: torch.Tensor, logits: torch.Tensor, attentions: Any = None, hidden: Any = None) -> None:
        if self.scores is not None:
            self.scores += (scores,)
        if self.logits is not None:
            self.logits += (logits,)
        if self.attentions is not None:
            self.attentions += (attentions,)
        if self.hidden_states is not None:
            self.hidden_states += (hidden,)

    @property
    def wants_attentions(self) -> bool:
        return self.attentions is not None


def take_rows(layers: tuple | None, rows: torch.Tensor) -> tuple | None:
    """The chosen rows of every tensor in a per-layer tuple (hidden states, attentions)."""
    if layers is None:
        return None
    return tuple(layer[rows] for layer in layers)


class Finisher:
    """Rows that have stopped: their later tokens become padding; the loop ends once every row has stopped."""

    def __init__(
        self, input_ids: torch.LongTensor, config: GenerationConfig, stopping_criteria: Any, streamer: BaseStreamer | None
    ) -> None:
        self.unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        self.pad = config._pad_token_tensor
        self.pads_finished = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
        self.stopping_criteria = stopping_criteria
        self.streamer = streamer

    def append(self, input_ids: torch.LongTensor, next_tokens: torch.LongTensor, scores: tuple | None) -> torch.Tensor:
        """`input_ids` with `next_tokens` added (padding for finished rows), streamed; updates which rows go on."""
        if self.pads_finished:
            next_tokens = next_tokens * self.unfinished + self.pad * (1 - self.unfinished)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        if self.streamer is not None:
            self.streamer.put(next_tokens.cpu())
        self.unfinished = self.unfinished & ~self.stopping_criteria(input_ids, scores)
        return input_ids

    @property
    def done(self) -> bool:
        return bool(self.unfinished.max() == 0)


def decoder_only_output(input_ids: torch.LongTensor, records: Records, cache: Any) -> Any:
    """What `_sample` returns: the sequences, or the output object when `return_dict_in_generate` asks for it."""
    if not records.config.return_dict_in_generate:
        return input_ids
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    return GenerateDecoderOnlyOutput(
        sequences=input_ids,
        scores=records.scores,
        logits=records.logits,
        attentions=records.attentions,
        hidden_states=records.hidden_states,
        past_key_values=cache,
    )
