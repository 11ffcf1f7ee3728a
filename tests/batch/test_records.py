"""The JSONL reader: every kind of bad line becomes one error item naming the line; nothing raises."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from llmgen.batch.records import parse_line, read
from tests.batch.batch_helpers import jsonl, line


def items(data: bytes) -> list:
    return list(read(io.BytesIO(data)))


def test_good_records_become_requests_with_their_fields() -> None:
    got = items(jsonl(
        {"id": "a", "prompt": "Hi", "system": "Be brief.", "preset": "beam", "params": {"top_k": 3}, "raw": True},
        {"messages": [{"role": "user", "content": "Hello"}], "extra": "kept out"},
    ))
    assert [(i.id, i.line, i.error) for i in got] == [("a", 1, None), (2, 2, None)]
    assert got[0].request.prompt == "Hi" and got[0].request.system == "Be brief." and got[0].request.raw
    assert got[0].preset == "beam" and got[0].params == {"top_k": 3}
    assert got[1].request.messages == [{"role": "user", "content": "Hello"}]


def test_missing_id_is_the_line_number_and_blank_lines_are_not_records() -> None:
    got = items(b'\n{"prompt": "a"}\n   \n{"prompt": "b", "id": null}\r\n\n')
    assert [(i.id, i.line, i.seq) for i in got] == [(2, 2, 0), (4, 4, 1)]


def test_every_bad_line_kind_is_an_error_naming_its_line() -> None:
    lines = [
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[1, 2]",
        b'{"id": "x"}',
        b'{"id": "y", "prompt": "a", "messages": [{"role": "user", "content": "b"}]}',
        b'{"prompt": 5}',
        b'{"messages": [{"role": "user"}]}',
        b'{"messages": []}',
        b'{"id": [1], "prompt": "a"}',
        b'{"id": true, "prompt": "a"}',
        b'{"prompt": "a", "params": [1]}',
        b'{"prompt": "a", "raw": "yes"}',
        b"[" * 100_000,
    ]
    got = items(b"\n".join(lines) + b"\n")
    assert [i.line for i in got] == list(range(1, len(lines) + 1))
    assert all(i.error for i in got), [i for i in got if not i.error]
    assert "UTF-8" in got[0].error and "JSON" in got[1].error and "object" in got[2].error
    assert "neither" in got[3].error and got[3].id == "x"
    assert "not both" in got[4].error and got[4].id == "y"
    assert got[8].id == 9 and "id must be" in got[8].error


def test_a_duplicate_id_is_an_error_for_the_later_record_only() -> None:
    got = items(jsonl({"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}, {"id": 1, "prompt": "c"}))
    assert [i.error for i in got[:2]] == [None, None]
    assert got[2].error == "duplicate id 1 (first on line 1)"


def test_an_unparseable_line_does_not_claim_its_line_number_as_an_id() -> None:
    got = items(b'oops\n{"id": 1, "prompt": "a"}\n')
    assert got[0].id == 1 and got[0].error and got[1].error is None


@settings(max_examples=300, deadline=None)
@given(st.lists(line, max_size=12))
def test_property_every_non_blank_line_yields_exactly_one_item(lines: list[bytes]) -> None:
    got = items(b"\n".join(lines))
    expected = [n for n, data in enumerate(lines, 1) if data.strip()]
    assert [i.line for i in got] == expected
    assert [i.seq for i in got] == list(range(len(expected)))
    for item in got:
        assert (item.error is None) == (item.request is not None)
        json.dumps({"id": item.id, "line": item.line, "error": item.error})


def test_json_python_cannot_read_is_an_error_record_in_words_not_class_names() -> None:
    deep = parse_line(b"[" * 100_000, 3, 0)
    huge = parse_line(b'{"prompt": "hi", "id": 1' + b"0" * 5000 + b"}", 4, 1)
    assert deep.error == "invalid JSON: nested too deeply"
    assert huge.error.startswith("invalid JSON: Exceeds the limit (4300 digits)") and "ValueError" not in huge.error
