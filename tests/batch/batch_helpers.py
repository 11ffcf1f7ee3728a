"""Running the batch pipeline in-process on a loaded engine, as `llmgen batch` does after loading."""

from __future__ import annotations

import io
import json
from typing import Any

from llmgen import batch, config, presets
from llmgen.options import Options, Session


def session_for(engine: Any, **flags: Any) -> tuple[Session, Options]:
    opts = Options(quiet=True, **flags)
    preset = presets.resolve(opts.preset or "greedy")
    system = opts.system if opts.system is not None else preset.system
    return Session(engine, preset, opts.overrides(), system, config.load_defaults()), opts


def run_bytes(engine: Any, data: bytes, batch_size: int | None = None, done: batch.Done | None = None,
              **flags: Any) -> tuple[bytes, batch.Summary]:
    session, opts = session_for(engine, **flags)
    out = io.BytesIO()
    summary = batch.process(session, opts, io.BytesIO(data), out, batch_size, done)
    return out.getvalue(), summary


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def jsonl(*objs: Any) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)
