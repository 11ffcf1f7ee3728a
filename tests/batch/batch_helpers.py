"""Running the batch pipeline in-process on a loaded engine, as `llmgen batch` does after loading."""

from __future__ import annotations

import io
import json
from typing import Any

from llmgen.batch.resume import Done
from llmgen.batch.runner import Summary, process
from llmgen.options import Options, Session


def session_for(engine: Any, **flags: Any) -> tuple[Session, Options]:
    """The session `llmgen batch` opens for these flags (the same precedence), on an engine already loaded."""
    opts = Options(quiet=True, **flags)
    return Session.open(opts, lambda defaults: defaults.preset, engine=engine), opts


def run_bytes(engine: Any, data: bytes, batch_size: int | None = None, done: Done | None = None,
              **flags: Any) -> tuple[bytes, Summary]:
    session, opts = session_for(engine, **flags)
    out = io.BytesIO()
    summary = process(session, opts, io.BytesIO(data), out, batch_size, done)
    return out.getvalue(), summary


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def jsonl(*objs: Any) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


WORDS = "the quick brown fox jumps over a lazy dog while seven small birds sing".split()


def prompts(n: int) -> list[dict]:
    """Prompts of varied lengths, so sorting within the window reorders them."""
    return [{"id": f"r{i}", "prompt": " ".join(WORDS[: 1 + (i * 7) % len(WORDS)])} for i in range(n)]
