"""The errors llmgen shows to users, each mapped to the exit code SPEC.md gives it."""

from __future__ import annotations


class LlmgenError(Exception):
    """A failure to report as one line, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(LlmgenError):
    """Bad input from the user: a flag, preset, config, model spec or prompt (exit 2)."""

    exit_code = 2
