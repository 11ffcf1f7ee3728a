"""`presets show --explain`: what transformers will actually do with a preset.

The logits processors and stopping criteria come from the installed transformers itself
(`_get_logits_processor`, `_get_stopping_criteria`), called on a stand-in model built on the meta
device (no weights, so this takes milliseconds) and a stand-in tokenizer for stop strings. They are
the lists `generate` builds for a model whose own generation_config adds nothing but an eos token;
lengths count from the end of the prompt.
"""

from __future__ import annotations

import copy
import warnings as warnings_module
from dataclasses import dataclass, field
from typing import Any

from llmgen import plans, strategies
from llmgen.config import DEFAULT_MAX_NEW_TOKENS
from llmgen.presets import ResolvedPreset
from llmgen.strategies import Strategy

STAND_IN_EOS = 0
# Parameters that describe the stand-in model or tokenizer (its eos id too), not the preset.
STAND_IN_PARAMS = {"max_position_embeddings", "max_valid_positions", "max_valid_end_lens", "maximum_token_len",
                   "num_stop_strings", "target_lens", "filter_value", "eos_token_id"}


@dataclass
class Explanation:
    strategy: str
    runs: str
    processors: list[str] = field(default_factory=list)
    criteria: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def explain(preset: ResolvedPreset) -> Explanation:
    """The strategy, the method that runs it, the processors and criteria in order, and ignored settings.

    The settings are planned as a model's would be (`llmgen.plans`): what a run would refuse is a UsageError here too.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, StoppingCriteriaList

    from llmgen.engine import _quiet_libraries

    _quiet_libraries()

    plan = plans.plan(preset, base={"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "eos_token_id": STAND_IN_EOS})
    config, row = plan.config, plan.row
    with torch.device("meta"):
        model = LlamaForCausalLM(
            LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                        num_attention_heads=1, num_key_value_heads=1)
        )
    prepared = copy.deepcopy(config)
    model._prepare_special_tokens(prepared, kwargs_has_attention_mask=True, device="cpu")
    prepared = model._prepare_generated_length(
        generation_config=prepared,
        has_default_max_length=False,
        has_default_min_length=True,
        model_input_name="input_ids",
        inputs_tensor=torch.zeros((1, 0), dtype=torch.long),
        input_ids_length=0,
    )
    with warnings_module.catch_warnings():  # about inputs_embeds: the stand-in prompt is empty
        warnings_module.simplefilter("ignore")
        processors = model._get_logits_processor(prepared, input_ids_seq_length=0, device="cpu")
    stops = prepared.stop_strings
    tokenizer = _stand_in_tokenizer([stops] if isinstance(stops, str) else stops) if stops else None
    criteria = model._get_stopping_criteria(prepared, StoppingCriteriaList(), tokenizer=tokenizer)

    return Explanation(
        strategy=row.name,
        runs=_method(row, preset.assistant_model),
        processors=[_describe(p) for p in processors],
        criteria=[_describe(c) for c in criteria],
        ignored=[*plan.warnings, *_unused(row, config)],
    )


def _unused(row: Strategy, config: Any) -> list[str]:
    """Settings only another strategy uses: transformers drops them without a word."""
    lines = []
    for owner in strategies.TABLE:
        for key in owner.own_settings:
            value = getattr(config, key, None)
            if value not in (None, 0, 0.0) and row.mode != owner.mode:
                lines.append(f"`{key}` is set to {value!r} but {row.mode} ignores it: {owner.own_settings_note}")
    return lines


def _method(row: Strategy, assistant: str | None) -> str:
    """The method that runs the strategy; the plan has refused a strategy llmgen does not run, and bad settings."""
    from transformers.generation.configuration_utils import GenerationMode
    from transformers.generation.utils import GENERATION_MODES_MAPPING

    if row.loop is not None:
        return f"{row.mode}: llmgen's own loop {row.loop.replace(':', '.')}"
    draft = f", drafts from {assistant}" if assistant else ""
    return f"{row.mode}: transformers GenerationMixin.{GENERATION_MODES_MAPPING[GenerationMode(row.mode)]}{draft}"


def _describe(obj: Any) -> str:
    """A processor or criterion with its scalar parameters, as transformers set them."""
    import torch

    params = []
    for key, value in vars(obj).items():
        if key.startswith("_") or key in STAND_IN_PARAMS:
            continue
        if isinstance(value, torch.Tensor) and value.numel() <= 8:
            value = value.tolist()
        if isinstance(value, (bool, int, float, str)) or (
            isinstance(value, (list, tuple)) and len(value) <= 8 and all(isinstance(v, (int, float, str)) for v in value)
        ):
            params.append(f"{key}={value!r}")
    return f"{type(obj).__name__}({', '.join(params)})"


def _stand_in_tokenizer(stops: list[str]) -> Any:
    """A character-level tokenizer that covers the stop strings: enough for StopStringCriteria to build."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdef" + "".join(stops)))
    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate([*chars, "[UNK]"])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)
