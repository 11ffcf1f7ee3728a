"""The errors llmgen shows to users, each mapped to the exit code SPEC.md gives it."""

from __future__ import annotations

import errno
import json
import sys


class LlmgenError(Exception):
    """A failure to report as one line, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(LlmgenError):
    """Bad input from the user: a flag, preset, config, model spec or prompt (exit 2)."""

    exit_code = 2


_USER_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG,
                     errno.EROFS, errno.ELOOP}


def explain(exc: BaseException) -> LlmgenError:
    """A library's failure in the user's words: the one translation from exceptions to what the CLI shows.

    Failures on what the user gave (a path, a JSON or YAML text, a generation setting transformers refuses, a model
    file) become `UsageError` (exit 2); the rest stay runtime failures (exit 1). No exception class name appears
    unless there is no message at all; `-v` shows the traceback.
    """
    if isinstance(exc, LlmgenError):
        return exc
    text = _first_line(exc)
    if isinstance(exc, json.JSONDecodeError):
        return UsageError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    if isinstance(exc, UnicodeDecodeError):
        return UsageError(f"not UTF-8 text (byte {exc.start})")
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        return UsageError(f"invalid YAML: {text}")
    if isinstance(exc, OSError) and exc.filename is not None:
        where = f"{exc.filename}: {exc.strerror or text}"
        return UsageError(where) if exc.errno in _USER_PATH_ERRNOS else LlmgenError(where)
    if type(exc).__name__ == "SafetensorError":
        return UsageError(f"model file is truncated or corrupt ({text})")
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return LlmgenError(f"out of memory{': ' + text if text else ''}",
                           hint="try --quant 4bit, a smaller --batch-size or fewer new tokens")
    if isinstance(exc, ValueError) and _raised_in(exc, "transformers/generation/"):
        return UsageError(f"generation settings: {text}")
    return LlmgenError(text or type(exc).__name__, hint=VERBOSE_HINT)


VERBOSE_HINT = "run with -v for the traceback"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _raised_in(exc: BaseException, path_part: str) -> bool:
    """Whether the innermost frame of the exception's traceback is in a file whose path contains `path_part`."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and path_part in tb.tb_frame.f_code.co_filename.replace("\\", "/")
