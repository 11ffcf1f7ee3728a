"""Turning the token ids generate produces into text as it goes, stop strings held back.

`TextCallbackStreamer` is a transformers streamer: generate calls `put` with each new token, and it
calls the caller's `on_text` with the text that is now safe to show: complete UTF-8 characters, and
nothing that could be the start of a stop string (a stop string is never shown).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could begin a stop string, and so must wait."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class IncrementalDecoder:
    """Decodes a growing list of token ids into the newly visible text at each step.

    Like transformers' TextStreamer, it re-decodes only the tokens since the last newline, so the
    cost per token stays flat on long outputs.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.settled = ""
        self.pending: list[int] = []
        self.shown = 0
        self.stopped = False

    def add(self, token_ids: Sequence[int]) -> str:
        """The text that becomes visible with these tokens ("" while a character or stop is incomplete)."""
        if self.stopped:
            return ""
        self.pending.extend(token_ids)
        text = self.settled + self.tokenizer.decode(self.pending, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        stop_at = find_stop(text, self.stops)
        if stop_at >= 0:
            self.stopped = True
            visible = stop_at
        else:
            visible = len(text) - held_back(text, self.stops)
            if text.endswith("\n") and visible == len(text):
                self.settled, self.pending = text, []
        new, self.shown = text[self.shown : visible], max(self.shown, visible)
        return new

    def flush(self) -> str:
        """At the end of generation: whatever was held back and is not a stop string."""
        if self.stopped:
            return ""
        text = self.settled + self.tokenizer.decode(self.pending, skip_special_tokens=True)
        new, self.shown = text[self.shown :], len(text)
        return new


class TextCallbackStreamer(BaseStreamer):
    """A transformers streamer that hands visible text to a callback and times the first token."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        on_text: Callable[[str], None] | None = None,
        stops: Sequence[str] = (),
    ) -> None:
        self.decoder = IncrementalDecoder(tokenizer, stops)
        self.on_text = on_text
        self.prompt_seen = False
        self.first_token_at: float | None = None
        self.token_ids: list[int] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate passes the prompt first
            self.prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        new = value.reshape(-1).tolist()
        self.token_ids.extend(new)
        if self.on_text is not None:
            text = self.decoder.add(new)
            if text:
                self.on_text(text)

    def end(self) -> None:
        if self.on_text is not None:
            text = self.decoder.flush()
            if text:
                self.on_text(text)
