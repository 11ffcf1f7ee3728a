"""Structured output: a constraint on what the model may write (JSON Schema, any JSON object, regex, grammar, choice).

A `Constraint` is a small frozen spec, kind and source, checked without a model (`parse`): the schema, regex or
grammar is compiled by llguidance, the grammar engine, and any error is one line naming the problem and its place.
Given a tokenizer, `processor` returns a transformers logits processor that masks every token the constraint does
not allow next; the compiled matcher is cached per tokenizer and spec, and each generation gets a copy.

The processor keys its state by each row's generated tokens, not by the row's index: beam search reorders beams,
diverse beam search calls it group by group, assisted decoding calls it on drafted prefixes, and each row's state
simply follows its own prefix. eos is allowed only where the constraint is complete. Nothing here imports torch,
transformers or llguidance until a constraint is used.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmgen.errors import UsageError

if TYPE_CHECKING:
    import torch

KEY = "constraint"
"""The key a settings layer (a batch record's, the command line's, chat's) carries its constraint under."""
Kind = Literal["json_schema", "json_object", "regex", "grammar", "choice"]
KINDS: tuple[str, ...] = ("json_schema", "json_object", "regex", "grammar", "choice")
FLAGS = {"json_schema": "--json-schema", "json_object": "--json-object", "regex": "--regex", "grammar": "--grammar",
         "choice": "--choice"}
# Compact JSON: flexible whitespace lets a model pad forever before a value it never writes.
_JSON_OPTIONS = {"whitespace_flexible": False}
_STATES_KEPT = 4096
_FILE_SUFFIXES = {".json", ".gbnf", ".ebnf", ".lark", ".txt", ".grammar"}


@dataclass(frozen=True)
class Constraint:
    """What the output must satisfy: `kind` and its `source` (schema JSON, regex, GBNF/Lark text, JSON list)."""

    kind: Kind
    source: str

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @property
    def written(self) -> dict[str, Any]:
        """The constraint as a settings layer, a preset or a batch record writes it (JSON-serialisable)."""
        if self.kind == "json_object":
            return {"json_object": True}
        if self.kind in ("json_schema", "choice"):
            return {self.kind: json.loads(self.source)}
        return {self.kind: self.source}

    @property
    def grammar(self) -> str:
        """The llguidance grammar this constraint compiles to."""
        from llguidance import LLMatcher
        from llguidance.gbnf_to_lark import any_to_lark

        if self.kind in ("json_schema", "json_object"):
            return LLMatcher.grammar_from_json_schema(self.source, overrides=_JSON_OPTIONS)
        if self.kind == "regex":
            return LLMatcher.grammar_from_regex(self.source)
        if self.kind == "choice":
            options = json.loads(self.source)
            return LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(o) for o in options))
        try:
            return LLMatcher.grammar_from_lark(any_to_lark(self.source))
        except Exception as exc:  # noqa: BLE001 - the converter raises plain Exceptions for GBNF syntax errors
            raise ValueError(_one_line(exc)) from None


def parse(kind: str, value: Any, *, where: str | None = None) -> Constraint:
    """A checked Constraint from what a user gave: a file path or inline text (a dict or list for records/presets).

    Raises UsageError (one line, naming `where` or the flag) for a schema that is not JSON or not a valid
    JSON Schema, an unsupported schema feature, a regex that does not compile, a grammar syntax error, an empty
    choice.
    """
    label = where or FLAGS.get(kind, kind)
    if kind not in KINDS:
        raise UsageError(f"{label}: unknown constraint kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "json_object":
        source = '{"type": "object"}'
    elif kind == "json_schema":
        source = _schema_source(value, label)
    elif kind == "choice":
        options = value if isinstance(value, list) else _split_choice(value, label)
        if not options or not all(isinstance(o, str) and o for o in options):
            raise UsageError(f"{label}: give one or more non-empty strings, e.g. --choice yes,no")
        source = json.dumps(options)
    else:
        if not isinstance(value, str) or not value:
            raise UsageError(f"{label}: give a non-empty {'pattern' if kind == 'regex' else 'grammar'}")
        source = _read_if_file(value, label) if kind == "grammar" else value
    constraint = Constraint(kind, source)  # type: ignore[arg-type]
    _validate(constraint, label)
    return constraint


def from_mapping(data: dict[str, Any], where: str) -> Constraint | None:
    """The one constraint a mapping (a batch record, a preset's `constraint:`) names, None if it names none."""
    named = [k for k in KINDS if data.get(k) is not None]
    if len(named) > 1:
        raise UsageError(f"{where}: give one constraint, not {' and '.join(named)}")
    if not named:
        return None
    value = data[named[0]]
    if named[0] == "json_object" and value not in (True, "true"):
        raise UsageError(f"{where}: json_object takes true")
    return parse(named[0], value, where=f"{where} {named[0]}")


def from_flags(flags: dict[str, Any]) -> Constraint | None:
    """The constraint the command line's flags ask for: at most one of them."""
    given = {k: v for k, v in flags.items() if v not in (None, False)}
    if len(given) > 1:
        raise UsageError(f"give one constraint flag, not {' and '.join(FLAGS[k] for k in given)}")
    if not given:
        return None
    kind, value = next(iter(given.items()))
    return parse(kind, value)


def _schema_source(value: Any, label: str) -> str:
    if isinstance(value, dict):
        schema = value
    elif isinstance(value, bool):
        raise UsageError(f"{label}: a JSON Schema must be an object")
    else:
        text = str(value)
        if not text.lstrip().startswith(("{", "[")):
            if not Path(text).expanduser().is_file():
                raise UsageError(f"{label}: no such file: {text} (or give the schema inline, as JSON)")
            text = _read_if_file(text, label)
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{label}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(schema, dict):
        raise UsageError(f"{label}: a JSON Schema must be an object")
    _check_schema(schema, label)
    return json.dumps(schema)


def _check_schema(schema: dict[str, Any], label: str) -> None:
    """JSON Schema's own meta-schema check, when `jsonschema` is installed (llguidance checks the rest)."""
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        place = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise UsageError(f"{label}: not a valid JSON Schema at {place}: {_one_line(exc.message)}") from None


def _split_choice(value: Any, label: str) -> list[str]:
    if not isinstance(value, str):
        raise UsageError(f"{label}: give the choices as a list of strings")
    return [] if not value.strip() else [o.strip() for o in value.split(",")]


def _read_if_file(text: str, label: str) -> str:
    """A file's text when `text` names a file, else `text` itself (inline); a missing file named like one is an error."""
    if "\n" in text or len(text) >= 4096:
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        if path.suffix.lower() in _FILE_SUFFIXES:
            raise UsageError(f"{label}: no such file: {text}")
        return text
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{label}: {text}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read {text}: {exc.strerror or exc}") from None


def _validate(constraint: Constraint, label: str) -> None:
    from llguidance import LLMatcher

    try:
        grammar = constraint.grammar
    except ValueError as exc:
        raise UsageError(f"{label}: {_one_line(exc)}") from None
    error = _one_line(LLMatcher.validate_grammar(grammar))
    if error:
        # A regex is compiled inside a one-rule grammar: report the regex parser's own words, caret included.
        inner = re.search(r"regex parse error: (.*?)(?: \d+ \| start:.*)?$", error)
        raise UsageError(f"{label}: {'invalid regex: ' + inner.group(1) if inner else error}")


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())


class _Compiled:
    """One constraint compiled for one tokenizer: a fresh matcher for each generation is a copy of this one."""

    def __init__(self, constraint: Constraint, lltok: Any, vocab: int, eos: set[int]) -> None:
        from llguidance import LLMatcher

        self.constraint = constraint
        self.vocab = vocab
        self.eos = eos
        self.matcher = LLMatcher(lltok, constraint.grammar, log_level=0)
        if self.matcher.is_error():
            raise UsageError(f"{FLAGS[constraint.kind]}: {_one_line(self.matcher.get_error())}")

    def fresh(self) -> Any:
        return self.matcher.deep_copy()

    def satisfied(self, token_ids: list[int]) -> bool:
        """Whether these generated tokens (eos included or not) complete the constraint."""
        ids = [t for t in token_ids if t not in self.eos]
        matcher = self.fresh()
        return matcher.consume_tokens(ids) and matcher.is_accepting() and not matcher.is_error()


_lock = threading.Lock()
_tokenizers: dict[tuple[int, int, int | None], tuple[Any, Any]] = {}
_compiled: OrderedDict[tuple[int, Constraint, tuple[int, ...], int], _Compiled] = OrderedDict()
_COMPILED_KEPT = 64  # a batch of many distinct schemas keeps the latest ones compiled


def compile_for(constraint: Constraint, tokenizer: Any, vocab: int, eos: list[int]) -> _Compiled:
    """The constraint compiled for this tokenizer, its vocabulary width (the logits') and eos ids; cached."""
    key = (id(tokenizer), constraint, tuple(sorted(eos)), vocab)
    with _lock:
        if key not in _compiled:
            _compiled[key] = _Compiled(constraint, _lltokenizer(tokenizer, vocab, eos), vocab, set(eos))
            while len(_compiled) > _COMPILED_KEPT:
                _compiled.popitem(last=False)
        _compiled.move_to_end(key)
        return _compiled[key]


def _lltokenizer(tokenizer: Any, vocab: int, eos: list[int]) -> Any:
    import llguidance.hf

    end = eos[0] if eos else None
    key = (id(tokenizer), vocab, end)
    held = _tokenizers.get(key)
    if held is None or held[0] is not tokenizer:  # the tokenizer is held, so its id is not reused meanwhile
        n_vocab = max(vocab, len(tokenizer))
        held = (tokenizer, llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=end))
        _tokenizers[key] = held
    return held[1]


def processor(constraint: Constraint, tokenizer: Any, vocab: int, eos: list[int]) -> ConstraintProcessor:
    """A fresh logits processor enforcing `constraint` (one per generate call: it keeps the rows' states)."""
    return ConstraintProcessor(compile_for(constraint, tokenizer, vocab, eos))


class ConstraintProcessor:
    """A transformers logits processor: tokens the constraint does not allow next get -inf.

    State per row is found by the row's generated tokens (those after the prompt width of the first call), so it
    follows beams however they are reordered. `mask_s` over `rows` (tokens masked, one per row per call) is what the
masks cost per token (`--stats`).
    """

    def __init__(self, compiled: _Compiled) -> None:
        self.compiled = compiled
        self.width: int | None = None
        self.states: dict[tuple[int, ...], Any] = {}
        self.mask_s = 0.0
        self.rows = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import time

        import torch

        start = time.perf_counter()
        if self.width is None:
            self.width = input_ids.shape[1]
        rows = input_ids[:, self.width :].tolist()
        words = (max(self.compiled.vocab, scores.shape[-1]) + 31) // 32
        bitmask = torch.zeros((len(rows), words), dtype=torch.int32)
        free = []
        eos = self.compiled.eos
        for i, ids in enumerate(rows):
            if not eos.isdisjoint(ids):
                free.append(i)  # finished rows: what comes after is padding
                continue
            matcher = self._state(tuple(ids))
            if matcher.is_stopped() or matcher.is_error():  # complete (or lost): only eos may come
                for token in eos:
                    bitmask[i, token // 32] |= _bit(token % 32)
                continue
            row = bitmask[i]
            matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * 4)
        allowed = _unpack(bitmask, scores.shape[-1]).to(scores.device)
        if free:
            allowed[free] = True
        masked = torch.where(allowed, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
        # A row whose allowed tokens were all filtered out before (top-k, DoLa's relative top): keep them, evenly.
        dead = torch.isinf(masked).all(dim=-1) & allowed.any(dim=-1)
        if dead.any():
            masked[dead] = torch.where(allowed[dead], 0.0, float("-inf")).to(masked.dtype)
        self.mask_s += time.perf_counter() - start
        self.rows += len(rows)
        return masked

    def _state(self, prefix: tuple[int, ...]) -> Any:
        """The matcher after `prefix`: from the state of its longest known prefix, advanced by the rest."""
        state = self.states.get(prefix)
        if state is not None:
            return state
        cut = len(prefix) - 1
        while cut >= 0 and prefix[:cut] not in self.states:
            cut -= 1
        base = self.states.get(prefix[:cut]) if cut >= 0 else None
        state = base.deep_copy() if base is not None else self.compiled.fresh()
        for token in prefix[max(cut, 0) if base is not None else 0 :]:
            if state.is_stopped() or state.is_error():
                break
            state.consume_token(token)
        if len(self.states) >= _STATES_KEPT:
            for key in list(self.states)[: _STATES_KEPT // 2]:
                del self.states[key]
        self.states[prefix] = state
        return state


def _bit(position: int) -> int:
    """The int32 value with only bit `position` set (bit 31 is the sign bit)."""
    return -(1 << 31) if position == 31 else 1 << position


def _unpack(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    """Per row, a bool per token from the packed little-endian int32 words llguidance fills."""
    import numpy as np
    import torch

    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=-1, bitorder="little")[:, :width]
    return torch.from_numpy(bits.view(np.bool_))
