"""Counting drafted tokens in assisted and prompt-lookup decoding: an engine hook around `generate`.

transformers keeps no tally of how many drafted tokens the main model accepted, so `count_drafts`
wraps the candidate generator that `generate` builds for the call: `get_candidates` tells how many
tokens were drafted in a round, `update_candidate_strategy` how many of them the main model kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


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
