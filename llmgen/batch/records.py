"""Reading `llmgen batch` input: JSONL lines to Items, each a request or the error it already is.

The reader streams the input and never raises on bad input: a bad line becomes an error record for
that line, and the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from llmgen.constraints import KINDS

if TYPE_CHECKING:
    from llmgen.engine import Request


@dataclass
class Item:
    """One non-blank input line: a request to run, or the error it already is."""

    seq: int
    line: int
    id: Any
    request: Request | None = None
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    constraint: dict[str, Any] = field(default_factory=dict)  # the record's "json_schema"/"regex"/... as given
    named: bool = True  # False when the id is only the line number of a line too broken to name one

    @property
    def key(self) -> str:
        """The id as resume compares it: 5 and "5" are different ids."""
        return json.dumps(self.id)


def read(stream: IO[bytes], raw: bool = False) -> Iterator[Item]:
    """Every non-blank line of a JSONL byte stream as an Item; never raises on bad input.

    Blank lines are skipped (a trailing empty line is not a record). A duplicate id becomes an error
    for the later record, so an id names one output record and resume stays well defined.
    """
    first_line: dict[str, int] = {}
    seq = 0
    for number, data in enumerate(stream, 1):
        if not data.strip():
            continue
        item = parse_line(data, number, seq, raw)
        if item.named:
            previous = first_line.setdefault(item.key, number)
            if previous != number and item.error is None:
                item.error, item.request = f"duplicate id {item.key} (first on line {previous})", None
        yield item
        seq += 1


def parse_line(data: bytes, line: int, seq: int, raw: bool = False) -> Item:
    """One line to an Item; any problem becomes the Item's error, with the line number as its id."""
    from llmgen.engine import Request

    def bad(message: str, id: Any = None) -> Item:
        return Item(seq, line, line if id is None else id, error=message, named=id is not None)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return bad(f"line {line} is not valid UTF-8 (byte {exc.start + 1})")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return bad(f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return bad("invalid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return bad(f"invalid JSON: {str(exc).splitlines()[0] if str(exc) else 'a value Python cannot read'}")
    if not isinstance(obj, dict):
        return bad(f"a record is a JSON object, not {_json_type(obj)}")
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return bad("the record holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    id = obj.get("id")
    if id is None:
        id = line
    elif isinstance(id, bool) or not isinstance(id, (str, int)):
        return bad(f"id must be a string or an integer, not {_json_type(id)}")
    problem = _check_fields(obj)
    if problem:
        return bad(problem, id)
    request = Request(
        prompt=obj.get("prompt"),
        messages=obj.get("messages"),
        system=obj.get("system"),
        raw=raw if obj.get("raw") is None else obj["raw"],
    )
    constraint = {k: obj[k] for k in KINDS if obj.get(k) is not None}
    return Item(seq, line, id, request, obj.get("preset"), dict(obj.get("params") or {}), constraint=constraint)


def _check_fields(obj: dict[str, Any]) -> str | None:
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if prompt is None and messages is None:
        return "the record has neither 'prompt' nor 'messages'"
    if prompt is not None and messages is not None:
        return "give 'prompt' or 'messages', not both"
    if prompt is not None and not isinstance(prompt, str):
        return f"'prompt' must be a string, not {_json_type(prompt)}"
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list of {\"role\", \"content\"} objects"
        for i, message in enumerate(messages):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                return f"messages[{i}] must be an object with string 'role' and 'content'"
    for key, kind, name in (("system", str, "a string"), ("preset", str, "a string"),
                            ("params", dict, "an object"), ("raw", bool, "true or false")):
        value = obj.get(key)
        if value is not None and not isinstance(value, kind):
            return f"'{key}' must be {name}, not {_json_type(value)}"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def count_records(path: Path) -> int:
    """Non-blank lines of a file, counted in chunks so memory stays flat: the progress bar's total."""
    with path.open("rb") as stream:
        return sum(1 for data in stream if data.strip())
