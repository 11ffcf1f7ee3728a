"""Diverse (group) beam search (Vijayakumar et al. 2016, "Diverse Beam Search").

The beams split into `num_beam_groups` groups that take turns each step; a group's scores are lowered by
`diversity_penalty` for every time an earlier group picked the same token at this step (Hamming diversity), so the
groups pull apart. Each group keeps its own finished hypotheses; the best `num_return_sequences` over all groups are
returned. Token for token what transformers 4.55's `_group_beam_search` with its `BeamSearchScorer` produced.
Beams are not streamable: the streamer only gets its `end()`, from the shared wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from llmgen import strategies
from llmgen.decoding._common import (
    DecodingSettingsError,
    Records,
    advance,
    cache_of,
    custom_loop,
    decode_step,
    prefill,
)

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer


def check_settings(config: GenerationConfig) -> None:
    beams, groups = config.num_beams, config.num_beam_groups
    if beams % groups:
        raise DecodingSettingsError(f"num_beams ({beams}) must be a multiple of num_beam_groups ({groups})")
    if (config.num_return_sequences or 1) > beams:
        raise DecodingSettingsError(
            f"num_return_sequences ({config.num_return_sequences}) cannot exceed num_beams ({beams})"
        )
    if config.do_sample:
        raise DecodingSettingsError("diverse beam search does not sample: set do_sample to false")


@dataclass
class Hypotheses:
    """The best finished hypotheses of one group of one prompt, scored by length-normalised log-probability."""

    size: int
    length_penalty: float
    early_stopping: bool | str
    max_length: int
    beams: list[tuple[float, torch.Tensor, list[int] | None]] = field(default_factory=list)
    worst: float = 1e9

    def add(self, tokens: torch.Tensor, sum_logprobs: float, generated_len: int, indices: list[int] | None) -> None:
        score = sum_logprobs / (generated_len**self.length_penalty)
        if len(self.beams) < self.size or score > self.worst:
            self.beams.append((score, tokens, indices))
            if len(self.beams) > self.size:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst = ranked[1][0]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum_logprobs: float, cur_len: int, prompt_len: int) -> bool:
        """Full, and no running beam can beat the worst kept hypothesis (4.55's `early_stopping` heuristics)."""
        if len(self.beams) < self.size:
            return False
        if self.early_stopping is True:
            return True
        length = cur_len - prompt_len
        if self.early_stopping is not False and self.length_penalty > 0.0:
            length = self.max_length - prompt_len
        return self.worst >= best_sum_logprobs / length**self.length_penalty


@custom_loop(strategies.DIVERSE_BEAM, check_settings)
def group_beam_search(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    streamer: BaseStreamer | None = None,
    **model_kwargs: Any,
) -> Any:
    """The `custom_generate` loop for `num_beam_groups` > 1; `input_ids` come expanded to batch x num_beams."""
    search = _GroupBeamState(input_ids, generation_config, stopping_criteria.max_length)
    records = Records(generation_config)
    if records.wants_attentions:
        model_kwargs["output_attentions"] = True
    if records.hidden_states is not None:
        model_kwargs["output_hidden_states"] = True

    outputs = prefill(model, input_ids, generation_config, model_kwargs)
    while True:
        model_kwargs = advance(model, outputs, model_kwargs)
        logits = outputs.logits[:, -1, :]
        input_ids, scores, reorder = search.step(input_ids, logits, logits_processor)
        records.add(scores, logits, outputs.attentions, outputs.hidden_states)
        del outputs
        cache = cache_of(model_kwargs)
        if cache is not None:
            cache.reorder_cache(reorder)
        if search.all_done or bool(stopping_criteria(input_ids, records.scores).all()):
            break
        outputs = decode_step(model, input_ids, model_kwargs)

    sequences, sequence_scores, beam_indices = search.finalize(input_ids)
    if not generation_config.return_dict_in_generate:
        return sequences
    from transformers.generation.utils import GenerateBeamDecoderOnlyOutput

    return GenerateBeamDecoderOnlyOutput(
        sequences=sequences,
        sequences_scores=sequence_scores if generation_config.output_scores else None,
        scores=records.scores,
        logits=records.logits,
        beam_indices=beam_indices,
        attentions=records.attentions,
        hidden_states=records.hidden_states,
        past_key_values=cache_of(model_kwargs),
    )


class _GroupBeamState:
    """Running beams, their scores and every group's finished hypotheses; rows are (prompt, beam) flattened."""

    def __init__(self, input_ids: torch.LongTensor, config: GenerationConfig, max_length: int) -> None:
        self.num_beams, self.groups = config.num_beams, config.num_beam_groups
        self.group_size = self.num_beams // self.groups
        self.batch_size = input_ids.shape[0] // self.num_beams
        self.prompt_len = input_ids.shape[1]
        self.keep = config.num_return_sequences or 1
        self.penalty = config.diversity_penalty or 0.0
        self.pad, eos = config._pad_token_tensor, config._eos_token_tensor
        self.eos = eos.tolist() if eos is not None else []
        self.max_length = max_length
        device = input_ids.device
        # Only the first beam of each group starts live, so a group does not begin with copies of one beam.
        scores = torch.full((self.batch_size, self.num_beams), -1e9, dtype=torch.float, device=device)
        scores[:, :: self.group_size] = 0
        self.beam_scores = scores.view(-1)
        self.hypotheses = [
            Hypotheses(self.group_size, _or(config.length_penalty, 1.0), _or(config.early_stopping, False), max_length)
            for _ in range(self.batch_size * self.groups)
        ]
        self.done = [False] * (self.batch_size * self.groups)
        self.track = bool(config.return_dict_in_generate and config.output_scores)
        self.history = torch.zeros((input_ids.shape[0], 0), dtype=torch.long, device=device)
        beam = torch.arange(self.group_size, device=device)
        self.group_rows = [
            (torch.arange(self.batch_size, device=device)[:, None] * self.num_beams + g * self.group_size + beam).view(-1)
            for g in range(self.groups)
        ]

    @property
    def all_done(self) -> bool:
        return all(self.done)

    def step(
        self, input_ids: torch.LongTensor, logits: torch.Tensor, logits_processor: LogitsProcessorList
    ) -> tuple[torch.LongTensor, torch.Tensor, torch.LongTensor]:
        """Advance every group by one token: the new ids, the processed scores and the cache reordering."""
        current = torch.zeros(input_ids.shape[0], dtype=input_ids.dtype, device=input_ids.device)
        reorder = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        processed_all = torch.zeros_like(logits)
        cur_len = input_ids.shape[1] + 1
        for g, rows in enumerate(self.group_rows):
            group_ids = input_ids[rows]
            logprobs = logits[rows].to(dtype=torch.float32, device=input_ids.device).log_softmax(dim=-1)
            if self.penalty > 0.0 and g > 0:
                logprobs = self._diversity(logprobs, current, g)
            processed = logits_processor(group_ids, logprobs)
            processed_all[rows] = processed
            vocab = processed.shape[-1]
            totals = (processed + self.beam_scores[rows].unsqueeze(-1)).view(self.batch_size, self.group_size * vocab)
            top_scores, top = torch.topk(totals, max(2, 1 + len(self.eos)) * self.group_size, dim=1, sorted=True)
            scores, tokens, sources = self._select(g, group_ids, top_scores, top // vocab, top % vocab, cur_len)
            self.beam_scores[rows] = scores
            input_ids[rows] = group_ids[sources]
            current[rows] = tokens
            reorder[rows] = self.num_beams * (sources // self.group_size) + g * self.group_size + sources % self.group_size
        if self.track:
            self.history = torch.cat([self.history[reorder], reorder[:, None]], dim=-1)
        return torch.cat([input_ids, current[:, None]], dim=-1), processed_all, reorder

    def _diversity(self, logprobs: torch.Tensor, current: torch.Tensor, group: int) -> torch.Tensor:
        """Lower each token by the penalty times how often earlier groups of the same prompt just picked it."""
        earlier = current.view(self.batch_size, self.num_beams)[:, : group * self.group_size]
        counts = torch.zeros(self.batch_size, logprobs.shape[-1], dtype=logprobs.dtype, device=logprobs.device)
        counts.scatter_add_(1, earlier, torch.ones_like(earlier, dtype=logprobs.dtype))
        penalty = (self.penalty * counts).repeat_interleave(self.group_size, dim=0)
        return logprobs - penalty

    def _select(
        self, g: int, group_ids: torch.LongTensor, top_scores: torch.Tensor, sources: torch.Tensor,
        tokens: torch.Tensor, cur_len: int,
    ) -> tuple[torch.Tensor, torch.LongTensor, torch.LongTensor]:
        """Per prompt, the group's next beams from the ranked candidates; candidates ending in eos become hypotheses."""
        size = self.group_size
        next_scores = torch.zeros((self.batch_size, size), dtype=top_scores.dtype)
        next_tokens = torch.zeros((self.batch_size, size), dtype=torch.long)
        next_sources = torch.zeros((self.batch_size, size), dtype=torch.long)
        score_rows, token_rows, source_rows = top_scores.tolist(), tokens.tolist(), sources.tolist()
        for b in range(self.batch_size):
            key = b * self.groups + g
            if self.done[key]:
                next_tokens[b] = self.pad if self.pad is not None else 0
                next_sources[b] = b * size
                continue
            kept = 0
            for rank, (score, token, source) in enumerate(zip(score_rows[b], token_rows[b], source_rows[b])):
                row = b * size + source
                if token in self.eos:
                    if rank >= size:
                        continue
                    indices = self._indices(row, g) if self.track else None
                    self.hypotheses[key].add(group_ids[row].clone(), score, cur_len - self.prompt_len, indices)
                else:
                    next_scores[b, kept], next_tokens[b, kept], next_sources[b, kept] = score, token, row
                    kept += 1
                if kept == size:
                    break
            self.done[key] = self.hypotheses[key].is_done(score_rows[b][0], cur_len, self.prompt_len)
        device = group_ids.device
        return next_scores.view(-1).to(device), next_tokens.view(-1).to(device), next_sources.view(-1).to(device)

    def _indices(self, group_row: int, g: int) -> list[int]:
        """The beam index at every step of the beam that `group_row` (a row within group g) continues."""
        b, j = divmod(group_row, self.group_size)
        beam = b * self.num_beams + g * self.group_size + j
        return self.history[beam].tolist() + [beam]

    def finalize(self, input_ids: torch.LongTensor) -> tuple[torch.LongTensor, torch.Tensor, torch.LongTensor | None]:
        """The best `num_return_sequences` hypotheses per prompt over all groups, padded; running beams count too."""
        for key, hypotheses in enumerate(self.hypotheses):
            if self.done[key]:
                continue
            b, g = divmod(key, self.groups)
            for j in range(self.group_size):
                beam = b * self.num_beams + g * self.group_size + j
                indices = self.history[beam].tolist() if self.track else None
                generated = input_ids.shape[1] - self.prompt_len
                hypotheses.add(input_ids[beam], self.beam_scores[beam].item(), generated, indices)

        best = []
        for b in range(self.batch_size):
            candidates = [h for g in range(self.groups) for h in self.hypotheses[b * self.groups + g].beams]
            ranked = sorted(candidates, key=lambda h: h[0])
            best.extend(ranked.pop() for _ in range(self.keep))

        lengths = [len(tokens) for _, tokens, _ in best]
        width = min(max(lengths) + 1, self.max_length) if self.max_length is not None else max(lengths) + 1
        fill = self.pad if self.pad is not None else (self.eos[0] if self.eos else 0)
        sequences = input_ids.new_full((len(best), width), int(fill))
        beam_indices = input_ids.new_full((len(best), width - self.prompt_len), -1) if self.track else None
        for i, (_, tokens, indices) in enumerate(best):
            sequences[i, : len(tokens)] = tokens
            if len(tokens) < width and self.eos:
                sequences[i, len(tokens)] = self.eos[0]
            if beam_indices is not None and indices:
                beam_indices[i, : len(indices)] = torch.tensor(indices)
        scores = torch.tensor([score for score, _, _ in best], dtype=torch.float32, device=input_ids.device)
        return sequences, scores, beam_indices


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
