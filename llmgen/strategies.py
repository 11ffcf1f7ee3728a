"""Decoding strategies as one table: what each is, how settings select it, and how llmgen runs it.

Every other module looks a strategy up here instead of knowing about it: the engine (batching,
streaming, the chat prefix cache), `llmgen.decoding` (which loop runs it), `presets show --explain`
(settings another strategy ignores), compare and settings validation. Adding a strategy is a row
below and its case in `select`, plus, when transformers does not run it, a loop module in `llmgen/decoding/`.

Nothing here imports transformers, so `presets list` can name each preset's strategy in a blink;
`tests/unit/test_strategies.py` checks `select` against transformers' own `get_generation_mode`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmgen.caches import CACHES

# Contrastive search widens and narrows its cache every step (static layers cannot, quantized ones lose their
# quantized part); drafting crops it back after rejected tokens, which neither static nor quantized layers do.
GROWING_CACHES = ("dynamic", "offloaded")


@dataclass(frozen=True)
class Strategy:
    """One decoding strategy: a row of the table."""

    name: str
    """What llmgen prints, and what `--json` outputs carry as "strategy"."""
    mode: str
    """transformers' `GenerationMode` value: the method `generate` dispatches on (shared by two drafting rows)."""
    title: str
    """The strategy in words, for messages."""
    loop: str | None = None
    """`module:function` of llmgen's own `custom_generate` loop; None when transformers runs the mode itself."""
    batches: bool = True
    """Whether several prompts can share one generate call (transformers drafts for one sequence at a time)."""
    streams: bool = True
    """Whether tokens can reach the terminal as they come (beams are only known at the end)."""
    reuses_cache: bool = False
    """Whether generate can start from a cache already holding a prefix (chat's `PrefixCache`)."""
    selected_by: tuple[str, ...] = ()
    """The settings whose values select this strategy (see `select` for how)."""
    own_settings: tuple[str, ...] = ()
    """Settings only this strategy uses: under another one transformers drops them without a word."""
    own_settings_note: str = ""
    """Why those settings go unused elsewhere, for `presets show --explain`."""
    loop_uses: tuple[str, ...] = ()
    """Settings transformers' validation calls ignored in this mode, which llmgen's own loop does use."""
    refusal: str | None = None
    """Why llmgen will not run this strategy; set, a plan selecting it is refused (exit 2)."""
    caches: tuple[str, ...] = CACHES
    """The KV-cache choices (`--cache`) it runs with; a plan asking for another is refused (`llmgen.caches`)."""


GREEDY = Strategy("greedy", "greedy_search", "greedy search", reuses_cache=True)
SAMPLING = Strategy("sampling", "sample", "multinomial sampling", reuses_cache=True, selected_by=("do_sample",))
BEAM = Strategy("beam", "beam_search", "beam search", streams=False, selected_by=("num_beams",))
BEAM_SAMPLING = Strategy(
    "beam-sampling", "beam_sample", "beam search with sampling", streams=False, selected_by=("num_beams", "do_sample")
)
CONTRASTIVE = Strategy(
    "contrastive",
    "contrastive_search",
    "contrastive search",
    loop="llmgen.decoding.contrastive:contrastive_search",
    selected_by=("penalty_alpha", "top_k"),
    own_settings=("penalty_alpha",),
    own_settings_note="only contrastive search uses it (with top_k > 1, no sampling, no beams)",
    loop_uses=("top_k", "penalty_alpha"),
    caches=GROWING_CACHES,
)
DOLA = Strategy(
    "dola",
    "dola_generation",
    "DoLa",
    loop="llmgen.decoding.dola:dola_decoding",
    selected_by=("dola_layers",),
    own_settings=("dola_layers",),
    own_settings_note="only DoLa uses it (without beams)",
)
DIVERSE_BEAM = Strategy(
    "diverse-beam",
    "group_beam_search",
    "diverse beam search",
    loop="llmgen.decoding.group_beam:group_beam_search",
    streams=False,
    selected_by=("num_beams", "num_beam_groups"),
    own_settings=("diversity_penalty",),
    own_settings_note="only diverse beam search uses it (num_beam_groups > 1)",
)
PROMPT_LOOKUP = Strategy(
    "prompt-lookup",
    "assisted_generation",
    "prompt lookup decoding",
    batches=False,
    selected_by=("prompt_lookup_num_tokens",),
    own_settings=("prompt_lookup_num_tokens",),
    own_settings_note="prompt lookup runs only without beams",
    caches=GROWING_CACHES,
)
ASSISTED = Strategy(
    "assisted",
    "assisted_generation",
    "assisted decoding",
    batches=False,
    selected_by=("assistant_early_exit", "use_mtp"),  # and a preset's assistant_model, which is no setting
    own_settings=("assistant_early_exit", "use_mtp"),
    own_settings_note="drafting runs only without beams",
    caches=GROWING_CACHES,
)
CONSTRAINED_BEAM = Strategy(
    "constrained-beam",
    "constrained_beam_search",
    "constrained beam search",
    streams=False,
    selected_by=("constraints", "force_words_ids"),
    own_settings=("constraints", "force_words_ids"),
    refusal="llmgen does not run constrained beam search (`force_words_ids`, `constraints`), which transformers 5 "
    "has only as Hub code; constrain the output with structured output instead",
)

TABLE: tuple[Strategy, ...] = (
    GREEDY, SAMPLING, BEAM, BEAM_SAMPLING, CONTRASTIVE, DOLA, DIVERSE_BEAM, PROMPT_LOOKUP, ASSISTED, CONSTRAINED_BEAM,
)
DRAFTING: tuple[Strategy, ...] = tuple(row for row in TABLE if row.mode == ASSISTED.mode)


def select(settings: Mapping[str, Any], assistant: str | None = None) -> Strategy:
    """The strategy transformers runs for these generation settings (and a draft model spec, if any).

    transformers' `GenerationConfig.get_generation_mode` in its own order, on a plain dict: constraints
    first, then the beam or non-beam base mode; drafting, and after it DoLa, take over greedy or sampling only.
    Which drafting row follows transformers' choice of candidate generator.
    """
    get = settings.get
    if get("constraints") is not None or get("force_words_ids") is not None:
        return CONSTRAINED_BEAM
    sample = get("do_sample") is True
    if get("num_beams") not in (None, 1):
        if _above(get("num_beam_groups"), 1):
            return DIVERSE_BEAM
        return BEAM_SAMPLING if sample else BEAM
    if not sample and _above(get("top_k"), 1) and _above(get("penalty_alpha"), 0):
        return CONTRASTIVE
    if assistant or get("assistant_early_exit") is not None:
        return ASSISTED
    if get("prompt_lookup_num_tokens") is not None:
        return PROMPT_LOOKUP
    if get("use_mtp"):
        return ASSISTED
    if get("dola_layers") is not None:
        return DOLA
    return SAMPLING if sample else GREEDY


def named(name: str) -> Strategy:
    """The row called `name`."""
    for row in TABLE:
        if row.name == name:
            return row
    raise ValueError(f"no strategy is called {name!r}")


def by_mode(mode: str) -> Strategy:
    """The row transformers' `GenerationMode` value `mode` runs as.

    prompt-lookup and assisted share `assisted_generation` and the same handling; this gives the first,
    and only `select` tells them apart.
    """
    for row in TABLE:
        if row.mode == mode:
            return row
    raise ValueError(f"no strategy runs as transformers' generation mode {mode!r}")


def _above(value: Any, floor: float) -> bool:
    return value is not None and value > floor
