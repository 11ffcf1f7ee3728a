"""Running the batch pipeline in-process on a loaded engine, as `llmgen batch` does after loading."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import strategies as st

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


# Any input line at all, for the property tests: records of every shape, cut lines, bytes, surrogates.
record = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.integers(-3, 5), st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers())),
        "prompt": st.one_of(st.text(max_size=20), st.integers()),
        "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content", "x"]), st.text(max_size=5))),
        "system": st.one_of(st.text(max_size=5), st.integers()),
        "preset": st.sampled_from(["greedy", "nope", 3]),
        "params": st.one_of(st.dictionaries(st.text(max_size=8), st.integers()), st.text()),
        "raw": st.one_of(st.booleans(), st.text(max_size=2)),
    },
)
line = st.one_of(
    record.map(lambda r: json.dumps(r).encode()),
    record.map(lambda r: json.dumps(r, ensure_ascii=False).encode()[: len(json.dumps(r)) // 2]),
    st.binary(max_size=40),
    st.sampled_from([b'{"id": "\\ud800", "prompt": "a"}', b'{"prompt": "x\\udfffy"}', b'{"id": 1e400}']),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
).map(lambda b: b.replace(b"\n", b" "))
