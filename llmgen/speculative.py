"""`run --stats` for assisted and prompt-lookup decoding: the same prompt decoded without drafting, compared.

The engine counts drafted and accepted tokens (`llmgen.drafts`); this measures what drafting bought.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgen.drafts import DraftStats
    from llmgen.engine import Plan


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
