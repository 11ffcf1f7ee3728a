"""`llmgen run`: one prompt, one answer: its plan (`--n-best` beams), the generation, and the `--json` object.

The command parses and prints; this is what it does in between, on a `Session` already open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgen.engine import Request
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmgen.engine import Result
    from llmgen.options import Session
    from llmgen.plans import Plan
    from llmgen.speculative import Speedup


@dataclass
class Answer:
    """What `run` generated, and with `--stats` how drafting compared with plain decoding."""

    result: Result
    drafting: Speedup | None = None


def plan(session: Session, n_best: int | None, seed: int | None) -> Plan:
    """The session's plan; with `--n-best K`, the K best beams of its beam search returned."""
    the_plan = session.plan(seed=seed)
    if n_best:
        the_plan = session.plan(n_best_settings(the_plan, n_best), seed=seed)
    return the_plan


def n_best_settings(plan: Plan, k: int) -> dict[str, int]:
    """`--n-best K`: K return sequences from a beam preset with at least K beams."""
    beams = plan.config.num_beams or 1
    if beams < 2:
        raise UsageError(f"--n-best needs a beam search preset; '{plan.preset}' is {plan.strategy}",
                         hint="try --preset beam")
    if k > beams:
        raise UsageError(f"--n-best {k} needs at least {k} beams; '{plan.preset}' has {beams}",
                         hint=f"add --num-beams {k}")
    return {"num_beams": beams, "num_return_sequences": k}


def generate(
    session: Session,
    plan: Plan,
    prompt: str,
    *,
    raw: bool = False,
    on_text: Callable[[str], None] | None = None,
    inspect: int | None = None,
    stats: bool = False,
) -> Answer:
    """Answer `prompt` (with the session's system prompt unless `raw`), text streamed to `on_text`.

    `inspect` asks for each token's probability and that many alternatives; `stats`, for a drafting strategy, also
    times plain decoding of the same prompt to compare.
    """
    from llmgen.speculative import versus_plain

    engine = session.engine
    prompt_ids = engine.encode(Request(prompt=prompt, system=session.system, raw=raw))
    result = engine.generate(prompt_ids, plan, on_text=on_text, inspect=inspect)
    return Answer(result, versus_plain(engine, prompt_ids, plan, result) if stats else None)


def as_json(session: Session, plan: Plan, answer: Answer) -> dict[str, Any]:
    """The `run --json` object SPEC.md defines, in its order; `tokens` with `--inspect`, `drafts` with `--stats`."""
    from llmgen.settings import effective

    info = session.engine.info
    result = answer.result
    obj = result.as_dict()
    usage = obj.pop("usage")  # after the plan's fields, as SPEC.md lists them
    obj.update(
        preset=plan.preset,
        strategy=plan.strategy,
        model=info.model,
        load={"device": info.device, "dtype": info.dtype, "quant": info.quant, "quant_reason": info.quant_reason},
        generation=effective(plan.config),
        usage=usage,
        timings={
            "load_s": round(info.load_s, 4),
            "ttft_s": None if result.ttft_s is None else round(result.ttft_s, 4),
            "total_s": round(result.total_s, 4),
            "tokens_per_s": round(result.tokens_per_s, 2),
        },
    )
    if result.constraint is not None:
        obj["constraint"] = obj.pop("constraint")  # last, after the plan's fields and timings
    if result.tokens is not None:
        obj["tokens"] = [t.as_dict() for t in result.tokens]
    if answer.drafting is not None:
        obj["drafts"] = answer.drafting.as_dict()
    return obj
