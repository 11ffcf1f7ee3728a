"""Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation").

Each step takes the `top_k` most likely tokens, runs them through the model in one batched forward over a cache
expanded `top_k` times, and keeps the candidate that best trades model confidence against the degeneration penalty:
the highest cosine similarity between its last hidden state and those of every token before it. Token for token
what transformers 4.55's `_contrastive_search` produced; the chosen candidate's forward is also the next step's, so
the loop costs one (wider) forward per token and never recomputes the prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from llmgen import strategies
from llmgen.decoding._common import (
    DecodingSettingsError,
    Finisher,
    Records,
    advance,
    cache_of,
    custom_loop,
    decoder_only_output,
    prefill,
    take_rows,
)

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer


def check_settings(config: GenerationConfig) -> None:
    if config.use_cache is False:
        raise DecodingSettingsError("contrastive search needs use_cache=true")
    if config.prefill_chunk_size is not None:
        raise DecodingSettingsError("contrastive search does not work with prefill_chunk_size")


@custom_loop(strategies.CONTRASTIVE, check_settings)
def contrastive_search(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    streamer: BaseStreamer | None = None,
    **model_kwargs: Any,
) -> Any:
    """The `custom_generate` loop for `penalty_alpha` > 0 with `top_k` > 1."""
    top_k, alpha = generation_config.top_k, generation_config.penalty_alpha
    records = Records(generation_config)
    finisher = Finisher(input_ids, generation_config, stopping_criteria, streamer)
    batch_size = input_ids.shape[0]

    # Padding never counts as a previous token for the degeneration penalty.
    mask = model_kwargs.get("attention_mask")
    context_mask = (mask if mask is not None else torch.ones_like(input_ids)).repeat_interleave(top_k, dim=0)

    model_kwargs["output_hidden_states"] = True
    if records.wants_attentions:
        model_kwargs["output_attentions"] = True
    outputs = prefill(model, input_ids, generation_config, model_kwargs)
    if getattr(outputs, "past_key_values", None) is None:
        raise DecodingSettingsError(f"contrastive search needs a KV cache, which {type(model).__name__} does not keep")
    context = outputs.hidden_states[-1]
    logits = outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32, device=input_ids.device)
    hidden, attentions = outputs.hidden_states, outputs.attentions
    model_kwargs = advance(model, outputs, model_kwargs)
    # Mask and position ids serve the top_k candidate rows from now on; the cache is widened each step.
    _, model_kwargs = model._expand_inputs_for_generation(expand_size=top_k, **model_kwargs)
    del outputs

    rows = torch.arange(batch_size, device=input_ids.device)
    while True:
        scores = logits_processor(input_ids, logits)
        top_probs, top_ids = torch.topk(scores.softmax(dim=-1), dim=-1, k=top_k)
        records.add(scores, logits, attentions, hidden)

        cache = cache_of(model_kwargs)
        cache.batch_repeat_interleave(top_k)
        outputs = _forward_candidates(model, top_ids.view(-1, 1), model_kwargs)
        candidates = outputs.hidden_states[-1]

        chosen = degeneration_ranking(context, candidates, top_probs, context_mask, alpha, top_k)
        picked = rows * top_k + chosen
        next_tokens = top_ids[rows, chosen]
        cache.batch_select_indices(picked)
        context = torch.cat([context, candidates[picked]], dim=1)
        context_mask = torch.cat([context_mask, context_mask.new_ones((context_mask.shape[0], 1))], dim=-1)
        logits = outputs.logits[picked, -1, :].float().to(input_ids.device)
        hidden, attentions = take_rows(outputs.hidden_states, picked), take_rows(outputs.attentions, picked)
        model_kwargs = advance(model, outputs, model_kwargs)
        del outputs

        input_ids = finisher.append(input_ids, next_tokens, records.scores)
        if finisher.done:
            break

    cache = cache_of(model_kwargs)
    if records.config.return_dict_in_generate and cache is not None:
        cache.crop(-1)  # the last token's keys/values are in; its successor's forward has not run: drop them
    return decoder_only_output(input_ids, records, cache)


def _forward_candidates(model: PreTrainedModel, candidate_ids: torch.LongTensor, model_kwargs: dict) -> Any:
    inputs = model.prepare_inputs_for_generation(candidate_ids, **model_kwargs)
    return model(**inputs, return_dict=True)


def degeneration_ranking(
    context: torch.Tensor,
    candidates: torch.Tensor,
    top_probs: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: float,
    top_k: int,
) -> torch.Tensor:
    """Per row, the candidate maximising (1 - alpha) * p - alpha * max cosine similarity to the context.

    context: (batch, seq, hidden); candidates: (batch * top_k, 1, hidden); top_probs: (batch, top_k).
    Computed in the same order and shapes as 4.55 so near-ties break the same way.
    """
    context = context.repeat_interleave(top_k, dim=0)
    context = context / context.norm(dim=2, keepdim=True)
    candidates = candidates / candidates.norm(dim=2, keepdim=True)
    cosine = torch.matmul(context, candidates.transpose(1, 2)).squeeze(-1)
    cosine = cosine + (1 - context_mask.to(cosine.dtype)) * torch.finfo(cosine.dtype).min
    penalty = cosine.max(dim=-1).values
    score = (1.0 - alpha) * top_probs.view(-1) - alpha * penalty
    # A candidate the logits processors ruled out (a constraint, a bad word) is never picked.
    score = score.masked_fill(top_probs.view(-1) == 0, float("-inf"))
    return score.view(-1, top_k).argmax(dim=-1)
