"""Assisted (speculative) and prompt-lookup decoding: counting drafted tokens, and the greedy baseline.

transformers keeps no tally of how many drafted tokens the main model accepted, so `count_drafts`
wraps the candidate generator that `generate` builds for the call: `get_candidates` tells how many
tokens were drafted in a round, `update_candidate_strategy` how many of them the main model kept.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgen.engine import Plan

@dataclass
class DraftStats:
    """Drafted and accepted tokens over one generation; `rounds` is the main model's verify passes."""

    rounds: int = 0
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


@contextmanager
def count_drafts(model: Any) -> Iterator[DraftStats]:
    """Count drafts for generate calls on `model` inside the block (nothing happens without drafting)."""
    stats = DraftStats()
    build = model._get_candidate_generator

    def counting(*args: Any, **kwargs: Any) -> Any:
        generator = build(*args, **kwargs)
        get_candidates, update = generator.get_candidates, generator.update_candidate_strategy

        def counted_candidates(input_ids: Any, *rest: Any, **more: Any) -> Any:
            candidates, logits = get_candidates(input_ids, *rest, **more)
            stats.drafted += candidates.shape[1] - input_ids.shape[1]
            return candidates, logits

        def counted_update(input_ids: Any, scores: Any, num_matches: Any) -> Any:
            stats.rounds += 1
            stats.accepted += int(num_matches)
            return update(input_ids, scores, num_matches)

        generator.get_candidates, generator.update_candidate_strategy = counted_candidates, counted_update
        return generator

    model._get_candidate_generator = counting
    try:
        yield stats
    finally:
        del model._get_candidate_generator


def without_drafts(plan: Plan) -> Plan:
    """The same plan without drafting (greedy, or sampling): what drafting is measured against."""
    from llmgen.strategies import DRAFTING, select

    config = copy.deepcopy(plan.config)
    for key in sorted({key for row in DRAFTING for key in row.selected_by}):
        setattr(config, key, None)
    return dataclasses.replace(plan, config=config, assistant=None, row=select(config.to_dict()))


@dataclass
class Speedup:
    """Drafting measured against plain decoding of the same prompt with the same settings."""

    drafts: DraftStats
    baseline: str
    speedup: float
    baseline_s: float
    same_tokens: bool

    def line(self) -> str:
        """The `--stats` line."""
        rate = self.drafts.acceptance_rate
        accepted = f"{self.drafts.accepted}/{self.drafts.drafted} drafted tokens accepted"
        accepted += f" ({rate:.0%})" if rate is not None else ""
        same = "same tokens" if self.same_tokens else "different tokens"
        return f"{accepted} · {self.speedup:.2f}x the speed of {self.baseline} ({self.baseline_s:.2f}s, {same})"

    def as_dict(self) -> dict[str, Any]:
        rate = self.drafts.acceptance_rate
        return {
            "drafted": self.drafts.drafted,
            "accepted": self.drafts.accepted,
            "acceptance_rate": None if rate is None else round(rate, 4),
            "baseline": self.baseline,
            "speedup": round(self.speedup, 3),
            "same_tokens": self.same_tokens,
        }


def versus_plain(engine: Any, prompt: list[int], plan: Plan, result: Any) -> Speedup | None:
    """Run the plan again without drafting on the same prompt and compare; None when nothing was drafted."""
    drafts = result.extra.get("drafts")
    if drafts is None:
        return None
    plain = without_drafts(plan)
    baseline = engine.generate(prompt, plain)
    speedup = baseline.total_s / result.total_s if result.total_s > 0 else 0.0
    return Speedup(drafts, plain.strategy, speedup, baseline.total_s, baseline.token_ids == result.token_ids)
