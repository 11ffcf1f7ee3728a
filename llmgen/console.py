"""Terminal output: the product to stdout byte for byte, everything else to stderr through rich.

rich decides colour from the stream (a terminal or not) and honours NO_COLOR.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from llmgen.engine import Result

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # ":x:" in user text stays ":x:"


def out(text: str) -> None:
    """Write generated text to stdout as it is, and show it now."""
    sys.stdout.write(text)
    sys.stdout.flush()


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def error(message: str, hint: str | None = None) -> None:
    err.print(f"[bold red]error:[/] {_escape(_one_line(message))}")
    if hint:
        err.print(f"[dim]hint: {_escape(_one_line(hint))}[/]")


def warning(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_escape(message)}")


def note(message: str) -> None:
    err.print(f"[dim]{_escape(message)}[/]")


class _Notes(logging.Handler):
    """Shows a log record as a dim note on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        note(record.getMessage())


_NOTES = _Notes()


def show_library_messages(verbose: bool, quiet: bool) -> None:
    """llmgen's own log messages (e.g. a first GGUF conversion) as dim notes on stderr; calling it again
    (the CLI run twice in one process) sets the level without doubling the notes."""
    logger = logging.getLogger("llmgen")
    if _NOTES not in logger.handlers:
        logger.addHandler(_NOTES)
    logger.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def stats_line(result: Result, max_new_tokens: int | None = None, raise_with: str | None = None) -> str:
    """Tokens, time to first token and speed, plus why the answer ended where it did.

    `raise_with` is how the caller's user raises max_new_tokens (`-n` for run; chat has `/set`).
    """
    parts = [f"{result.prompt_tokens} prompt tokens", f"{result.completion_tokens} new tokens"]
    if result.ttft_s is not None:
        parts.append(f"first token {result.ttft_s:.2f}s")
    parts.append(f"{result.tokens_per_s:.1f} tokens/s")
    parts.append(f"{result.total_s:.2f}s")
    reason = result.finish_reason
    if reason == "length" and max_new_tokens:
        reason = f"length: stopped at max_new_tokens={max_new_tokens}"
        if raise_with:
            reason += f", raise it with {raise_with}"
    parts.append(f"finish: {reason}")
    constraint = result.extra.get("constraint")
    if constraint:
        done = "satisfied" if constraint["satisfied"] else "NOT satisfied"
        parts.append(f"{constraint['kind']} {done}, masks {constraint['mask_ms_per_token']:.2f} ms/token")
    return " · ".join(parts)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _one_line(text: str) -> str:
    """Control characters (a user's input quoted in an error) shown as escapes, so an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def stdout_console(highlight: bool = False) -> Console:
    """A rich console on stdout, for output that is itself the product (tables, token inspection).

    `highlight` colours numbers and strings in a terminal, for listings of settings (`info`, `presets`).
    """
    return Console(highlight=highlight, emoji=False)
