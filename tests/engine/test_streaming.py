"""Incremental detokenization: complete characters only, stop strings never shown."""

from __future__ import annotations

import pytest

from llmgen.streaming import IncrementalDecoder, find_stop, held_back


def test_find_stop_returns_the_earliest_match() -> None:
    assert find_stop("a END b STOP", ["STOP", "END"]) == 2
    assert find_stop("nothing", ["STOP"]) == -1
    assert find_stop("x", [""]) == -1


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [("hello E", ["END"], 1), ("hello EN", ["END"], 2), ("hello", ["END"], 0), ("a\n\n", ["\n\n\n"], 2)],
)
def test_held_back_counts_a_possible_stop_prefix(text: str, stops: list[str], expected: int) -> None:
    assert held_back(text, stops) == expected


def stream(tokenizer, ids: list[int], stops: list[str]) -> tuple[str, IncrementalDecoder]:
    decoder = IncrementalDecoder(tokenizer, stops)
    shown = "".join(decoder.add([i]) for i in ids) + decoder.flush()
    return shown, decoder


def test_streamed_pieces_add_up_to_the_whole_text(builtin_engine) -> None:
    tokenizer = builtin_engine.tokenizer
    text = "Line one.\nLine two — with a dash, émigré and 日本語.\n\nEnd."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    shown, _ = stream(tokenizer, ids, [])
    assert shown == tokenizer.decode(ids)


def test_stop_string_is_never_shown_even_when_split_across_tokens(builtin_engine) -> None:
    tokenizer = builtin_engine.tokenizer
    ids = tokenizer("The answer is 42. ###STOP### and more", add_special_tokens=False).input_ids
    shown, decoder = stream(tokenizer, ids, ["###STOP###"])
    assert shown == "The answer is 42. "
    assert decoder.stopped
