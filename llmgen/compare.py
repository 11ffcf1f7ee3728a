"""`llmgen compare`: one prompt under several presets on one loaded model, with measures of each output.

The measures are plain functions of token id lists (tested on hand-made lists). They count every new
token the model produced, the final eos included, so `new_tokens` is the length the others are over.
`mean_logprob` is the model's own view of the output: one forward pass over prompt and output,
whatever strategy produced it, so outputs of different strategies are scored alike.

Ctrl-C stops the comparison where it is: the preset it cut short is kept with what it produced,
marked interrupted (its measures cover that part, without the scoring pass), and the presets after
it are listed as not run, so nothing cut short passes for a complete output.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmgen import presets
from llmgen.errors import UsageError
from llmgen.strategies import ASSISTED, GREEDY

if TYPE_CHECKING:
    from rich.console import Console

    from llmgen.engine import Request, Result
    from llmgen.options import Session
    from llmgen.presets import ResolvedPreset

REPETITION_N = 4


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct(tokens: Sequence[int], n: int) -> float | None:
    """Share of the n-grams that are unique (distinct-n); None when the output has no n-gram."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else None


def repetition(tokens: Sequence[int], n: int = REPETITION_N) -> float | None:
    """Share of the n-grams that repeat an earlier one: 0 for no loop, near 1 for a stuck output."""
    share = distinct(tokens, n)
    return None if share is None else 1.0 - share


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Outcome:
    """One preset's output and its measures."""

    preset: str
    strategy: str
    result: Result
    logprobs: list[float]
    interrupted: bool = False  # Ctrl-C cut it short: the text is what came before it

    def measures(self) -> dict[str, Any]:
        ids = self.result.token_ids
        return {
            "new_tokens": len(ids),
            "seconds": round(self.result.total_s, 4),
            "tokens_per_s": round(len(ids) / self.result.total_s, 2) if self.result.total_s > 0 else 0.0,
            "distinct_1": _round(distinct(ids, 1)),
            "distinct_2": _round(distinct(ids, 2)),
            "repetition_4gram": _round(repetition(ids)),
            "mean_logprob": _round(mean(self.logprobs)),
        }

    def as_dict(self) -> dict[str, Any]:
        obj = {"preset": self.preset, "strategy": self.strategy, **self.result.as_dict(), "measures": self.measures()}
        if self.interrupted:
            obj["interrupted"] = True
        return obj


@dataclass
class Comparison:
    """The outcomes in preset order; after a Ctrl-C, the presets it left unstarted."""

    outcomes: list[Outcome] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return bool(self.not_run) or any(o.interrupted for o in self.outcomes)


def default_presets() -> list[str]:
    """Every built-in preset named after the strategy it selects: one per strategy, greedy first."""
    names = []
    for path in sorted(presets.builtin_dir().glob("*.yaml")):
        preset = presets.resolve(str(path))
        if preset.name == preset.strategy:
            names.append(preset.name)
    return sorted(names, key=lambda name: (name != GREEDY.name, name))


def choose(names: str | None, assistant: str | None) -> list[ResolvedPreset]:
    """The presets to compare, loaded and checked before any model loads; `--assistant` adds the greedy preset
    drafted by it."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names is not None else default_presets()
    if not wanted:
        raise UsageError("--presets is empty", hint="give preset names separated by commas")
    chosen = [presets.load(name) for name in wanted if name != ASSISTED.name]
    if assistant:
        base = presets.load(GREEDY.name)
        chosen.append(dataclasses.replace(base, name=ASSISTED.name, assistant_model=assistant))
    elif ASSISTED.name in wanted:
        raise UsageError(f"'{ASSISTED.name}' in --presets needs a draft model", hint="add --assistant MODEL")
    return chosen


def run(session: Session, request: Request, chosen: Sequence[ResolvedPreset], seed: int | None,
        verbose: bool = False) -> Comparison:
    """Each preset on the same prompt (with its own system prompt unless one was given), one model.

    A 1-token warm-up comes first so that the first preset's time is not the one-off start-up cost.
    Ctrl-C ends the comparison at the preset it cuts short (see the module's docstring).
    """
    engine = session.engine
    comparison = Comparison()
    try:
        engine.generate(request, engine.plan(presets.load(GREEDY.name), {"max_new_tokens": 1}))
        for preset in chosen:
            outcome = _run_one(session, request, preset, seed, verbose)
            comparison.outcomes.append(outcome)
            if outcome.interrupted:
                break
    except KeyboardInterrupt:
        pass  # between presets: those not started are listed below
    comparison.not_run = [p.name for p in chosen[len(comparison.outcomes):]]
    return comparison


def _run_one(session: Session, request: Request, preset: ResolvedPreset, seed: int | None,
             verbose: bool) -> Outcome:
    """One preset's outcome; Ctrl-C while it generates or is scored gives it marked interrupted."""
    from llmgen import console
    from llmgen.engine import Result

    engine = session.engine
    plan = session.plan(seed=seed, preset=preset)
    system = request.system if request.system is not None else preset.system
    prompt_ids = engine.encode(dataclasses.replace(request, system=system))
    if verbose:
        console.note(f"compare: {preset.name} ({plan.strategy})…")
    result = None
    start = time.perf_counter()
    try:
        with console.err.status(f"{preset.name} ({plan.strategy})…"):
            result = engine.generate(prompt_ids, plan)
            if result.finish_reason == "interrupted":
                return Outcome(preset.name, plan.strategy, result, [], interrupted=True)
            logprobs = engine.score(prompt_ids, result.token_ids)
    except KeyboardInterrupt:  # a strategy that does not stream (beams) keeps nothing; or while scoring
        if result is None:
            result = Result(text="", token_ids=[], finish_reason="interrupted", prompt_tokens=len(prompt_ids),
                            total_s=time.perf_counter() - start)
        return Outcome(preset.name, plan.strategy, result, [], interrupted=True)
    return Outcome(preset.name, plan.strategy, result, logprobs)


def as_json(prompt: str, model: str, comparison: Comparison) -> dict[str, Any]:
    """The `compare --json` object; after a Ctrl-C also `"interrupted": true` and the `not_run` presets."""
    obj: dict[str, Any] = {"prompt": prompt, "model": model, "results": [o.as_dict() for o in comparison.outcomes]}
    if comparison.interrupted:
        obj.update(interrupted=True, not_run=comparison.not_run)
    return obj


def render(prompt: str, comparison: Comparison, console: Console) -> None:
    """One row per preset: its output, wrapped, beside its measures; a Ctrl-C's marks."""
    from rich.markup import escape
    from rich.table import Table

    caption = None
    if comparison.not_run:
        caption = "[bold red]interrupted[/]: not run: " + escape(", ".join(comparison.not_run))
    table = Table(title=escape(prompt), caption=caption, show_lines=True, expand=True)
    table.add_column("preset", no_wrap=True)
    table.add_column("output", ratio=1, overflow="fold")
    table.add_column("measures", no_wrap=True)
    for outcome in comparison.outcomes:
        m = outcome.measures()
        lines = [
            f"{m['new_tokens']} tokens · {m['seconds']:.2f} s",
            f"{m['tokens_per_s']:.1f} tokens/s",
            f"distinct-1 {_show(m['distinct_1'])}",
            f"distinct-2 {_show(m['distinct_2'])}",
            f"repeated 4-grams {_show(m['repetition_4gram'])}",
            f"mean logprob {_show(m['mean_logprob'])}",
        ]
        name = f"[bold]{escape(outcome.preset)}[/]\n[dim]{escape(outcome.strategy)}[/]"
        if outcome.interrupted:
            name += "\n[bold red]interrupted[/]"
        table.add_row(name, escape(outcome.result.text), "\n".join(lines))
    console.print(table)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _show(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
