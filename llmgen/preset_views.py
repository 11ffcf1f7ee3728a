"""`llmgen presets list` and `presets show` as printed: every preset in a table, one preset's files and
settings, and `--explain`'s lists.

Listing reads presets the light way (`presets.resolve`: no torch, no transformers) and marks broken ones
instead of failing; showing takes a preset `presets.load` has checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape

from llmgen import presets
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from llmgen.engine import Engine
    from llmgen.presets import ResolvedPreset

INVALID = "invalid"


@dataclass(frozen=True)
class Listed:
    """One row of `presets list`: an invalid preset has strategy "invalid" and its error as description."""

    name: str
    strategy: str
    source: str
    description: str


def listing() -> list[Listed]:
    """Every preset by name, built-in and the user's, with the strategy it selects and where it comes from."""
    rows = []
    for name, found in sorted(presets.discover().items()):
        try:
            strategy, description = presets.resolve(name).strategy, presets.read(found.path).description
        except UsageError as exc:
            strategy, description = INVALID, str(exc)
        source = "built-in" if found.builtin else ("user, shadows built-in" if found.shadows_builtin else "user")
        rows.append(Listed(name, strategy, source, " ".join(description.split())))
    return rows


def plain_list(rows: list[Listed]) -> str:
    """The listing for a pipe: one tab-separated line per preset."""
    return "".join(f"{row.name}\t{row.strategy}\t{row.source}\t{row.description}\n" for row in rows)


def render_list(rows: list[Listed], out: Console) -> None:
    """The listing for a terminal: a table, invalid presets in red."""
    from rich.table import Table

    table = Table("name", "strategy", "source", "description")
    for row in rows:
        table.add_row(row.name, row.strategy, row.source, row.description,
                      style="red" if row.strategy == INVALID else None)
    out.print(table)


def show(preset: ResolvedPreset, out: Console, explain: bool = False, engine: Engine | None = None) -> list[str]:
    """The preset, its extends chain with each file as written, the settings it amounts to over the model's own;
    with `explain`, what transformers will do with it. With a loaded `engine`, what the model's own
    generation_config sets comes first, and the effective settings include it. Returns the warnings it has not shown."""
    from rich.syntax import Syntax

    from llmgen import plans, settings

    if engine is not None:
        out.print(f"[bold]the model's own generation_config[/] ({escape(engine.info.model)}):")
        for key, value in engine.model_defaults().items():
            out.print(f"  {key}: {escape(repr(value))}")
        out.print()
    plan = engine.plan(preset) if engine is not None else plans.plan(preset)
    out.print(f"[bold]{escape(preset.name)}[/] — {escape(preset.description)}")
    out.print(f"strategy: [bold]{plan.strategy}[/]")
    out.print("extends: " + " -> ".join(escape(f.name) for f in preset.chain))
    for found in preset.chain:
        if found.model_own:
            continue
        out.print(f"\n[dim]# {escape(str(found.path))}[/]")
        lexer = "json" if found.path.suffix.lower() == ".json" else "yaml"
        out.print(Syntax(found.path.read_text(encoding="utf-8"), lexer, theme="ansi_dark", background_color="default"))
    where = "with" if engine is not None else "over"
    out.print(f"\n[bold]effective generation settings[/] ({where} the model's own generation_config):")
    for key, value in settings.effective(plan.config).items():
        out.print(f"  {key}: {escape(repr(value))}")
    for extra in ("quant", "system", "assistant_model"):
        if getattr(preset, extra):
            out.print(f"  ({extra}: {escape(repr(getattr(preset, extra)))})")
    if not explain:
        return list(plan.warnings)
    _explain(preset, out)
    return []


def _explain(preset: ResolvedPreset, out: Console) -> None:
    from llmgen.explain import explain

    found = explain(preset)
    out.print(f"\n[bold]runs[/]: {escape(found.runs)}")
    out.print("[bold]logits processors[/], applied in this order:")
    for n, processor in enumerate(found.processors, 1):
        out.print(f"  {n}. {escape(processor)}")
    if not found.processors:
        out.print("  none: the model's own scores are used as they are")
    out.print("[bold]stopping criteria[/] (lengths count from the end of the prompt):")
    for n, criterion in enumerate(found.criteria, 1):
        out.print(f"  {n}. {escape(criterion)}")
    out.print("[bold]ignored settings[/]:")
    for line in found.ignored:
        out.print(f"  [yellow]- {escape(line)}[/]")
    if not found.ignored:
        out.print("  none")
