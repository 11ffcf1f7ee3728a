"""The batch pipeline on a tiny random model: order, grouping, errors, out-of-memory, resume."""

from __future__ import annotations

import io
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmgen.batch import runner
from llmgen.engine import Request

from tests.batch.batch_helpers import jsonl, line as random_line, prompts, records, run_bytes


@pytest.fixture
def calls(tiny_engine, monkeypatch):
    """Each generate_batch call's (number of prompts, max_new_tokens), in order."""
    seen: list[tuple[int, int]] = []
    real = tiny_engine.generate_batch

    def spy(requests, plan):
        seen.append((len(requests), plan.config.max_new_tokens))
        return real(requests, plan)

    monkeypatch.setattr(tiny_engine, "generate_batch", spy)
    return seen


def test_output_is_in_input_order_and_equals_each_prompt_alone(tiny_engine, calls) -> None:
    data, summary = run_bytes(tiny_engine, jsonl(*prompts(7)), batch_size=3, max_new_tokens=4)
    out = records(data)
    assert [r["id"] for r in out] == [f"r{i}" for i in range(7)]
    assert [r["line"] for r in out] == list(range(1, 8))
    assert [n for n, _ in calls] == [3, 3, 1]
    for record, source in zip(out, prompts(7)):
        alone = tiny_engine.generate_batch([tiny_engine.encode(Request(prompt=source["prompt"]))], _greedy(tiny_engine, 4))
        assert record["text"] == alone[0].text
        assert record["usage"] == {"prompt_tokens": alone[0].prompt_tokens, "completion_tokens": 4}
        assert record["finish_reason"] == "length" and record["preset"] == "greedy"
    assert summary.records == 7 and summary.errors == 0 and summary.tokens == 28 and not summary.failed


def _greedy(engine, n: int):
    from llmgen import presets

    return engine.plan(presets.resolve("greedy"), {"max_new_tokens": n})


def test_records_are_grouped_by_settings_and_flags_beat_record_params(tiny_engine, calls) -> None:
    lines = jsonl(
        {"id": 1, "prompt": "a b", "params": {"max_new_tokens": 2}},
        {"id": 2, "prompt": "c d", "params": {"max_new_tokens": 3}},
        {"id": 3, "prompt": "e f", "params": {"max_new_tokens": 2}},
        {"id": 4, "prompt": "g h", "params": {"max_new_tokens": 4}},
    )
    data, _ = run_bytes(tiny_engine, lines, batch_size=8, max_new_tokens=5)
    assert [n for n, _ in calls] == [4]  # the command line's -n overrides every record's params
    calls.clear()
    data, _ = run_bytes(tiny_engine, lines, batch_size=8, set=["min_new_tokens=1"])
    assert sorted(calls) == [(1, 3), (1, 4), (2, 2)]
    assert [r["usage"]["completion_tokens"] for r in records(data)][:3] == [2, 3, 2]


def test_per_record_presets_and_return_sequences(tiny_engine) -> None:
    lines = jsonl(
        {"id": "b", "prompt": "hello there", "preset": "beam", "params": {"num_return_sequences": 2}},
        {"id": "g", "prompt": "hello there"},
        {"id": "s", "prompt": "hello there", "preset": "sampling", "params": {"seed": 3}},
    )
    out = records(run_bytes(tiny_engine, lines, max_new_tokens=3)[0])
    assert [r["preset"] for r in out] == ["beam", "greedy", "sampling"]
    assert len(out[0]["texts"]) == 2 and "text" not in out[0] and len(out[0]["finish_reason"]) == 2
    assert out[0]["usage"]["completion_tokens"] == 6
    again = records(run_bytes(tiny_engine, lines, max_new_tokens=3)[0])
    assert again[2] == out[2]  # a record's seed makes its sampling reproducible


def test_unbatchable_strategies_run_one_at_a_time(tiny_engine, calls) -> None:
    out = records(run_bytes(tiny_engine, jsonl(*prompts(3)), batch_size=8, preset="prompt-lookup",
                            max_new_tokens=3)[0])
    assert [n for n, _ in calls] == [1, 1, 1] and all("text" in r for r in out)


def test_every_error_kind_is_one_record_and_the_run_goes_on(tiny_engine) -> None:
    long_prompt = " ".join(["word"] * 600)  # the tiny model's context is 512
    lines = jsonl(
        b"\xff not utf-8",
        b"{bad json",
        {"id": "n"},
        {"id": "p", "prompt": "x", "preset": "no-such-preset"},
        {"id": "v", "prompt": "x", "params": {"temperature": -1}},
        {"id": "k", "prompt": "x", "params": {"no_such_setting": 1}},
        {"id": "l", "prompt": long_prompt},
        {"id": "e", "prompt": "   "},
        {"id": "ok", "prompt": "fine"},
        {"id": "ok", "prompt": "again"},
        b'{"id": "\\udc00", "prompt": "lone surrogate"}',
        {"id": "t", "messages": [{"role": "tool", "content": "the template may refuse this"}, {"role": "user", "content": "x"}]},
    )
    out, summary = run_bytes(tiny_engine, lines, max_new_tokens=2)
    got = records(out)
    assert [r["line"] for r in got] == list(range(1, 13))
    assert [r["id"] for r in got] == [1, 2, "n", "p", "v", "k", "l", "e", "ok", "ok", 11, "t"]
    errors = [r.get("error", "") for r in got]
    for i, expected in enumerate(["UTF-8", "invalid JSON", "neither", "unknown preset", "temperature",
                                  "no_such_setting", "longer than the model's context", "empty", "", "duplicate",
                                  "surrogate"]):
        assert expected in errors[i], (i, errors[i])
    assert set(got[8]) == {"id", "line", "text", "finish_reason", "usage", "preset"}
    assert set(got[0]) == {"id", "line", "error"}
    assert summary.errors == 10 + ("error" in got[11]) and summary.failed


def test_out_of_memory_halves_the_batch_and_retries(tiny_engine, monkeypatch) -> None:
    real = tiny_engine.generate_batch
    sizes: list[int] = []

    def tight(requests, plan):
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(requests, plan)

    monkeypatch.setattr(tiny_engine, "generate_batch", tight)
    out = records(run_bytes(tiny_engine, jsonl(*prompts(8)), batch_size=8, max_new_tokens=2)[0])
    assert all("text" in r for r in out) and [r["id"] for r in out] == [f"r{i}" for i in range(8)]
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}


def test_out_of_memory_alone_is_that_records_error(tiny_engine, monkeypatch) -> None:
    def never(requests, plan):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(tiny_engine, "generate_batch", never)
    out = records(run_bytes(tiny_engine, jsonl(*prompts(2)), batch_size=2, max_new_tokens=2)[0])
    assert [r["error"] for r in out] == ["out of memory, even alone"] * 2


def test_auto_batch_size_follows_free_memory(tiny_engine, monkeypatch) -> None:
    plan = _greedy(tiny_engine, 64)
    assert runner.auto_batch_size(tiny_engine, plan, 40) == runner.AUTO_CAP["cpu"]
    monkeypatch.setattr(tiny_engine, "free_memory", lambda: 20 << 20)
    small = runner.auto_batch_size(tiny_engine, plan, 40)
    assert 1 <= small < runner.AUTO_CAP["cpu"]
    monkeypatch.setattr(tiny_engine, "free_memory", lambda: 0)
    assert runner.auto_batch_size(tiny_engine, plan, 40) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(random_line, max_size=6))
def test_property_every_line_gives_one_output_record_through_the_whole_pipeline(tiny_engine, lines) -> None:
    data, summary = run_bytes(tiny_engine, b"\n".join(lines), batch_size=4, max_new_tokens=1)
    out = records(data)
    assert [r["line"] for r in out] == [n for n, d in enumerate(lines, 1) if d.strip()]
    assert all(("error" in r) != ("text" in r) for r in out)
    assert summary.records == len(out)
    json.dumps(out)


def test_memory_stays_flat_over_many_records(tiny_engine) -> None:
    """Only the ids are kept (for duplicates and resume): no record, plan or traceback piles up."""
    import tracemalloc

    from tests.batch.batch_helpers import session_for

    def kept_bytes(n: int) -> int:
        data = jsonl(*({"id": i, "prompt": "hello " * 20, "preset": "no-such-preset"} for i in range(n)))
        session, opts = session_for(tiny_engine)
        tracemalloc.start()
        runner.process(session, opts, io.BytesIO(data), io.BytesIO(), None)
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return kept

    small, large = kept_bytes(500), kept_bytes(10_000)
    assert (large - small) / 9_500 < 400  # bytes a record: about what its id costs
