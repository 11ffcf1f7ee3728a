"""DoLa: decoding by contrasting layers (Chuang et al., ICLR 2024).

Each step reads the next-token distribution off some early ("premature") layers as well as the last one, picks
per row the premature layer whose distribution is furthest from the final one (Jensen-Shannon divergence), and
scores tokens by the difference of their log-probabilities, keeping only tokens the final layer finds plausible
(relative-top filtering). Token for token what transformers 4.55's `_dola_decoding` produced, with two deliberate
differences: the premature layer is chosen per row (4.55 averaged the divergence over the batch, so a row's output
depended on its batch mates) and layer indices out of range are an error (4.55 dropped them silently).
As in 4.55, the early-exit hidden states go through the output embeddings as they are (no final norm).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from llmgen import strategies
from llmgen.decoding._common import (
    DecodingSettingsError,
    Finisher,
    Records,
    advance,
    cache_of,
    custom_loop,
    decode_step,
    decoder_only_output,
    prefill,
)

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

RELATIVE_TOP = 0.1


def check_settings(config: GenerationConfig) -> None:
    layers = config.dola_layers
    if isinstance(layers, str) and layers in ("low", "high"):
        return
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        return
    raise DecodingSettingsError(f"dola_layers must be 'low', 'high' or a list of layer indices, not {layers!r}")


def premature_layers(dola_layers: str | list[int], num_layers: int, tied_embeddings: bool) -> list[int]:
    """The candidate early-exit layers (indices into `hidden_states`, 0 being the embeddings), as 4.55 chose them.

    With tied embeddings the embedding output read through the output embeddings is nearly the identity, so the
    lowest layers are skipped.
    """
    if not tied_embeddings or num_layers < 2:
        start = 0
    else:
        start = 2 if num_layers > 2 else 1
    if dola_layers == "low":
        if start == num_layers // 2:
            return [start]
        return list(range(start, num_layers // 2, 2)) if num_layers <= 40 else list(range(start, 20, 2))
    if dola_layers == "high":
        return list(range(num_layers // 2, num_layers, 2)) if num_layers <= 40 else list(range(num_layers - 20, num_layers, 2))
    bad = [i for i in dola_layers if not 0 <= i < num_layers]
    if bad:
        raise DecodingSettingsError(
            f"dola_layers index {bad[0]} is out of range: the model has {num_layers} layers (use 0 to {num_layers - 1})"
        )
    return list(dola_layers)


@custom_loop(strategies.DOLA, check_settings)
def dola_decoding(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    streamer: BaseStreamer | None = None,
    **model_kwargs: Any,
) -> Any:
    """The `custom_generate` loop for `dola_layers`, greedy or sampling."""
    text_config = model.config.get_text_config()
    layers = premature_layers(
        generation_config.dola_layers, text_config.num_hidden_layers, bool(text_config.tie_word_embeddings)
    )
    lm_head = model.get_output_embeddings()
    if lm_head is None:
        raise DecodingSettingsError(f"DoLa needs output embeddings, which {type(model).__name__} does not have")
    records = Records(generation_config)
    finisher = Finisher(input_ids, generation_config, stopping_criteria, streamer)

    model_kwargs["output_hidden_states"] = True
    if records.wants_attentions:
        model_kwargs["output_attentions"] = True
    outputs = prefill(model, input_ids, generation_config, model_kwargs)
    chosen_layers: list[list[int]] = []  # per step, per row: the premature layer DoLa contrasted with
    while True:
        final = outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32)
        early = [lm_head(outputs.hidden_states[i][:, -1, :]).to(final.device) for i in layers]
        model_kwargs = advance(model, outputs, model_kwargs)

        logits, choice = contrast_layers(early, final)
        logits = logits.to(input_ids.device)
        chosen_layers.append([layers[i] for i in choice.tolist()])
        scores = logits_processor(input_ids, logits)
        records.add(scores, final, outputs.attentions, outputs.hidden_states)
        if generation_config.do_sample:
            next_tokens = torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)
        else:
            next_tokens = torch.argmax(scores, dim=-1)
        del outputs

        input_ids = finisher.append(input_ids, next_tokens, records.scores)
        if finisher.done:
            break
        outputs = decode_step(model, input_ids, model_kwargs)

    output = decoder_only_output(input_ids, records, cache_of(model_kwargs))
    if not isinstance(output, torch.Tensor):
        output.premature_layers = chosen_layers  # read by `llmgen run --inspect`
    return output


def contrast_layers(early: list[torch.Tensor], final: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p_final - log p_premature over the plausible tokens, the premature layer picked per row by JS divergence.

    Returns the contrasted logits and, per row, the position in `early` of the layer picked.
    """
    if len(early) == 1:
        base = early[0]
        choice = torch.zeros(final.shape[0], dtype=torch.long)
    else:
        stacked = torch.stack(early, dim=0)  # (layers, batch, vocab)
        mature_probs = F.softmax(final, dim=-1)
        premature_probs = F.softmax(stacked, dim=-1)
        middle = 0.5 * (mature_probs[None, :, :] + premature_probs)
        kl_mature = F.kl_div(F.log_softmax(final, dim=-1)[None, :, :], middle, reduction="none").mean(-1)
        kl_premature = F.kl_div(F.log_softmax(stacked, dim=-1), middle, reduction="none").mean(-1)
        js = 0.5 * (kl_mature + kl_premature)  # (layers, batch)
        choice = js.argmax(dim=0)
        base = stacked[choice, torch.arange(final.shape[0], device=final.device)]
    final, base = relative_top_filter(final, base)
    return final - base, choice


def relative_top_filter(
    final: torch.Tensor, base: torch.Tensor, relative_top: float = RELATIVE_TOP
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-softmax both; tokens below `relative_top` x the final layer's best probability are ruled out."""
    final = final.log_softmax(dim=-1)
    base = base.log_softmax(dim=-1)
    best = final.max(dim=-1).values
    threshold = torch.min(best, best + math.log(relative_top)).unsqueeze(-1)
    implausible = final < threshold
    base[implausible] = -1e-3
    final[implausible] = -float("inf")
    return final, base
