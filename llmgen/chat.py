"""`llmgen chat`'s conversation: the messages exchanged, the settings of the next reply, transcripts.

`Conversation` keeps the history consistent: a reply joins it only once generated (an interrupted
one marked so), the chat template is re-applied over it each turn, and when it would not fit the
context with `max_new_tokens` to spare the oldest turns leave the model's window (the system prompt
stays). A `PrefixCache` carries the keys and values of earlier turns over, so a turn encodes only
its new tokens. Nothing here reads a terminal or prints: `llmgen.repl` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmgen import constraints, presets, settings
from llmgen.config import read_file
from llmgen.engine import PrefixCache, Request
from llmgen.errors import UsageError
from llmgen.files import write_atomic

if TYPE_CHECKING:
    from llmgen.engine import Engine, Plan, Result
    from llmgen.presets import ResolvedPreset

TRANSCRIPT_FORMAT = "llmgen-chat/1"

Message = dict[str, Any]


@dataclass
class Turn:
    """What one reply (or retry) did: its result, and how many old messages left the window first."""

    result: Result | None
    dropped: int = 0

    @property
    def interrupted(self) -> bool:
        return self.result is None or self.result.finish_reason == "interrupted"


@dataclass
class Totals:
    """Session counters for /stats."""

    replies: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    last: Result | None = None
    window_tokens: int = 0

    def add(self, result: Result) -> None:
        self.replies += 1
        self.prompt_tokens += result.prompt_tokens
        self.reused_tokens += result.extra.get("cached_tokens", 0)
        self.completion_tokens += result.completion_tokens
        self.seconds += result.total_s
        self.last = result


class Conversation:
    """A chat with one engine: history, system prompt, preset and settings of the next reply.

    The history alternates user and assistant messages and ends with a reply; `first` is the index
    of the oldest message the model still sees.
    """

    def __init__(
        self,
        engine: Engine,
        preset: ResolvedPreset,
        *,
        overrides: dict[str, Any] | None = None,
        system: str | None = None,
        raw: bool = False,
        seed: int | None = None,
    ) -> None:
        self.engine = engine
        self.preset = preset
        self.overrides = dict(overrides or {})
        self.system = system
        self.raw = raw
        self.seed = seed
        self.messages: list[Message] = []
        self.first = 0
        self.cache = PrefixCache()
        self.totals = Totals()

    def plan(self, preset: ResolvedPreset | None = None, overrides: dict[str, Any] | None = None) -> Plan:
        """The validated plan of the next reply (or of a candidate preset and settings)."""
        layer = self.overrides if overrides is None else overrides
        return self.engine.plan(preset or self.preset, layer, seed=self.seed)

    @property
    def window(self) -> list[Message]:
        return self.messages[self.first :]

    def reply(
        self, text: str, on_text: Callable[[str], None] | None = None, on_trim: Callable[[int], None] | None = None
    ) -> Turn:
        """Answer a user message; the exchange joins the history once there is a reply to keep."""
        return self._exchange([*self.messages, {"role": "user", "content": text}], on_text, on_trim)

    def retry(
        self, on_text: Callable[[str], None] | None = None, on_trim: Callable[[int], None] | None = None
    ) -> Turn:
        """Answer the last user message again; the old reply stays if the new one yields nothing."""
        if not self.messages:
            raise UsageError("nothing to retry yet")
        return self._exchange(self.messages[:-1], on_text, on_trim)

    def undo(self) -> int:
        """Drop the last exchange; returns how many messages went."""
        if not self.messages:
            raise UsageError("nothing to undo")
        cut = max(i for i, m in enumerate(self.messages) if m["role"] == "user")
        removed = len(self.messages) - cut
        del self.messages[cut:]
        self.first = min(self.first, len(self.messages))
        return removed

    def reset(self) -> None:
        """Forget every message; the system prompt, preset and settings stay."""
        self.messages, self.first = [], 0
        self.cache.clear()

    def update_settings(self, pairs: list[str]) -> Plan:
        """Apply `/set KEY=VALUE` pairs (`KEY=` removes a setting); nothing changes if the result is invalid."""
        written: dict[str, Any] = {}
        rest = []
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if sep and key.strip() in constraints.KINDS:  # kept as typed: a pattern or schema is no YAML value
                written = {k: None for k in constraints.KINDS} | {key.strip(): value.strip() or None}
            else:
                rest.append(pair)
        new = settings.imply_sampling(settings.parse_set(rest, source="/set")) if rest else {}
        settings.check(new, "/set")
        new.update(written)
        merged = {k: v for k, v in {**self.overrides, **new}.items() if v is not None}
        plan = self.plan(overrides=merged)
        self.overrides = merged
        return plan

    def use_preset(self, name: str) -> Plan:
        """Switch preset; a system prompt that came with the old preset follows the new one."""
        preset = presets.load(name)
        plan = self.plan(preset=preset)
        if self.system == self.preset.system:
            self.system = preset.system
        self.preset = preset
        return plan

    def _exchange(
        self,
        messages: list[Message],
        on_text: Callable[[str], None] | None,
        on_trim: Callable[[int], None] | None,
    ) -> Turn:
        plan = self.plan()
        first, prompt = self._fit(messages, plan)
        if first > self.first and on_trim is not None:
            on_trim(first - self.first)
        try:
            result = self.engine.generate(prompt, plan, on_text=on_text, cache=self.cache)
        except KeyboardInterrupt:  # strategies that cannot stream (beams) have nothing to keep
            result = None
        self.seed = None  # seeded once: the session as a whole is reproducible, and /retry varies
        turn = Turn(result, dropped=first - self.first)
        if result is None or (result.finish_reason == "interrupted" and not result.text):
            return turn
        message: Message = {"role": "assistant", "content": result.text}
        if result.finish_reason == "interrupted":
            message["interrupted"] = True
        self.messages = [*messages, message]
        self.first = first
        self.totals.add(result)
        self.totals.window_tokens = len(prompt)
        return turn

    def _fit(self, messages: list[Message], plan: Plan) -> tuple[int, list[int]]:
        """The first message the model can see and the prompt's token ids, oldest turns dropped to fit."""
        limit = self.engine.context_length
        max_new = plan.config.max_new_tokens or 0
        first = min(self.first, len(messages) - 1)
        while True:
            prompt = self.engine.encode(Request(messages=_plain(messages[first:]), system=self.system, raw=self.raw))
            if limit is None or len(prompt) + max_new <= limit:
                return first, prompt
            later = [i for i in range(first + 1, len(messages)) if messages[i]["role"] == "user"]
            if not later:
                raise UsageError(
                    f"this message ({len(prompt)} tokens with the system prompt) and max_new_tokens={max_new} "
                    f"do not fit the model's context ({limit} tokens)",
                    hint="shorten the message, or lower max_new_tokens with /set max_new_tokens=N",
                )
            first = later[0]

    def transcript(self) -> dict[str, Any]:
        """The conversation as a JSON-ready transcript: messages plus what it takes to resume it."""
        return {
            "format": TRANSCRIPT_FORMAT,
            "model": self.engine.info.model,
            "preset": _preset_ref(self.preset),
            "settings": self.overrides,
            "generation": settings.effective(self.plan().config),
            "system": self.system,
            "messages": self.messages,
        }

    def save(self, path: Path) -> None:
        """Write the transcript whole or not at all: a failed re-save (a full disk) keeps the old file."""
        text = json.dumps(self.transcript(), ensure_ascii=False, indent=2) + "\n"
        try:
            write_atomic(path.expanduser(), text)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None

    def restore(self, saved: Transcript, flags: Flags | None = None) -> list[str]:
        """Take a read transcript over once its preset and settings make a valid plan; returns warnings.

        `flags`, the command line's choices given with the transcript (`--load`), override what it says, as they
        override a preset: its settings key by key, the preset and the system prompt where given.
        """
        flags = flags or Flags()
        if flags.preset is not None:
            preset = flags.preset
        else:
            preset = presets.load(saved.preset) if saved.preset else self.preset
        overrides = {**saved.settings, **flags.overrides}
        self.plan(preset=preset, overrides=overrides)
        self.preset, self.overrides = preset, overrides
        self.system = flags.system if flags.system is not None else saved.system
        self.messages = [m.as_message() for m in saved.messages]
        self.first = 0
        model = self.engine.info.model
        if saved.model and saved.model != model:
            return [f"the transcript was made with {saved.model}; continuing with {model}"]
        return []


@dataclass(frozen=True)
class Flags:
    """What the command line chose for a chat, which overrides a transcript loaded with it: settings, and the preset
    and system prompt when given."""

    overrides: dict[str, Any] = field(default_factory=dict)
    preset: ResolvedPreset | None = None
    system: str | None = None


class SavedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant"]
    content: str
    interrupted: bool = False

    def as_message(self) -> Message:
        message: Message = {"role": self.role, "content": self.content}
        if self.interrupted:
            message["interrupted"] = True
        return message


class Transcript(BaseModel):
    """A saved chat, as `/save` writes it; unknown top-level keys are ignored (`generation` is informative)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    format: str = TRANSCRIPT_FORMAT
    model: str | None = None
    preset: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    system: str | None = None
    messages: list[SavedMessage]


def read_transcript(path: Path) -> Transcript:
    """Parse and check a transcript file; every problem is one line naming the file.

    Whatever the file holds is refused here, before anything uses it: a transcript is user input.
    """
    saved = read_file(path, Transcript, "json", "a JSON object with 'messages', as /save writes")
    if saved.format != TRANSCRIPT_FORMAT:
        raise UsageError(f"{path}: unknown transcript format '{saved.format}' (expected {TRANSCRIPT_FORMAT})")
    roles = [m.role for m in saved.messages]
    if roles != ["user", "assistant"] * (len(roles) // 2):
        raise UsageError(f"{path}: messages must alternate user and assistant, starting with user and ending with a reply")
    texts = {"system": saved.system} | {f"messages.{i}.content": m.content for i, m in enumerate(saved.messages)}
    for where, text in texts.items():
        if text is not None and not _is_unicode(text):
            raise UsageError(f"{path}: {where}: not valid Unicode text (a lone surrogate escape)")
    generation = {k: v for k, v in saved.settings.items() if k not in constraints.KINDS}
    settings.check(generation, f"{path}: settings")
    constraints.from_mapping(saved.settings, f"{path}: settings")
    return saved


def _is_unicode(text: str) -> bool:
    """Whether text can be encoded: JSON's \\ud800 escapes give strings the tokenizer refuses."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as the chat template takes them (llmgen's own marks left out)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _preset_ref(preset: ResolvedPreset) -> str:
    """The preset's name when that name finds it again, else its file's path."""
    found = presets.discover().get(preset.name)
    source = preset.chain[0].path
    if preset.chain[0].model_own:
        return preset.name
    return preset.name if found is not None and found.path == source else str(source.resolve())
