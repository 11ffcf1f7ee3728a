"""The `llmgen chat` loop: input from a terminal or a pipe, slash commands, and what the user sees.

Replies stream to stdout with plain writes; the chrome (banner, stats, notices, errors) goes to
stderr through `llmgen.console`. With stdin a terminal, prompt_toolkit edits the input and keeps
its history in the state dir; otherwise each line (or continued line, or block) is one turn, so a
chat can be scripted: `printf 'hi\\n/stats\\n' | llmgen chat`.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from llmgen import config, console, presets
from llmgen.chat import Conversation, Flags, Turn, read_transcript
from llmgen.errors import VERBOSE_HINT, UsageError, explain

if TYPE_CHECKING:
    from llmgen.engine import Plan

PROMPT = ">>> "
CONTINUATION = "... "
BLOCK = '"""'
EXIT_HINT = "(to leave: Ctrl-D or /exit)"
RAISE_MAX_NEW_TOKENS = "/set max_new_tokens=N"

# name: (arguments, what it does); aliases map onto these names
COMMANDS: dict[str, tuple[str, str]] = {
    "help": ("", "this list"),
    "exit": ("", "leave the chat (Ctrl-D does too)"),
    "reset": ("", "forget the conversation; the system prompt, preset and settings stay"),
    "system": ("[TEXT | -]", "show the system prompt, set it, or remove it with -"),
    "preset": ("[NAME]", "switch preset for the next replies; without a name, list them"),
    "set": ("KEY=VALUE ...", "change generation settings for the next replies; KEY= removes one"),
    "schema": ("FILE|JSON | -", "replies are JSON valid under this JSON Schema; - removes it"),
    "show": ("", "model, preset and the effective generation settings"),
    "retry": ("", "generate the last reply again"),
    "undo": ("", "drop the last exchange"),
    "save": ("FILE", "write the conversation to a JSON transcript"),
    "load": ("FILE", "continue a transcript written by /save"),
    "stats": ("", "token counts, context use and speed"),
}
ALIASES = {"quit": "exit", "bye": "exit", "?": "help", "regen": "retry", "clear": "reset"}
_SET_PAIRS = re.compile(r"\s+(?=[A-Za-z_][A-Za-z0-9_]*=)")


def is_complete(text: str) -> bool:
    """Whether an input is finished: no trailing `\\`, and any `\"\"\"` block closed."""
    stripped = text.strip()
    if stripped.startswith(BLOCK):
        return len(stripped) >= 2 * len(BLOCK) and stripped.endswith(BLOCK)
    return not text.endswith("\\")


def finish(text: str) -> str:
    """The message a complete input stands for: block quotes and continuation backslashes removed."""
    stripped = text.strip()
    if stripped.startswith(BLOCK):  # closed, or left open at the end of piped input
        inner = stripped[len(BLOCK) : -len(BLOCK) if is_complete(text) else None]
        return inner.strip("\n")
    return "\n".join(line[:-1] if line.endswith("\\") else line for line in text.split("\n"))


def parse_command(text: str) -> tuple[str, str] | None:
    """`/name args` as (name, args); None for a message (`//...` sends a message starting with `/`)."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, arg = text[1:].partition(" ")
    name = name.strip().lower()
    return ALIASES.get(name, name), arg.strip()


def piped_inputs(lines: Iterable[str]) -> Iterator[str]:
    """Turns from lines of text: one a line, unless a line continues or a block is open."""
    pending: list[str] = []
    for line in lines:
        pending.append(line.rstrip("\r\n"))
        text = "\n".join(pending)
        if is_complete(text):
            pending = []
            if finish(text).strip():
                yield finish(text)
    if pending and finish("\n".join(pending)).strip():
        yield finish("\n".join(pending))


def terminal_inputs() -> Iterator[str]:
    """Turns typed at a terminal, with line editing and history kept across sessions."""
    from prompt_toolkit import PromptSession

    options: dict[str, Any] = {}
    if not sys.stdout.isatty():  # the replies are going to a file: draw the prompt on stderr
        from prompt_toolkit.output import create_output

        options["output"] = create_output(stdout=sys.stderr)
    session: PromptSession[str] = PromptSession(
        history=_history(),
        multiline=True,
        key_bindings=_key_bindings(),
        prompt_continuation=lambda width, line_number, wrap_count: CONTINUATION.rjust(width),
        **options,
    )
    while True:
        try:
            text = session.prompt(PROMPT)
        except KeyboardInterrupt:
            console.note(EXIT_HINT)
            continue
        except EOFError:
            return
        if finish(text).strip():
            yield finish(text)


def _history() -> Any:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = config.state_dir() / "history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        console.warning(f"input history is not kept: cannot write {path}: {exc.strerror}")
        return InMemoryHistory()
    return FileHistory(str(path))


def _key_bindings() -> Any:
    """Enter sends a complete input and continues an unfinished one; Ctrl-C clears the line or hints."""
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event: Any) -> None:
        if event.current_buffer.text:
            event.app.exit(result="")
        else:
            event.app.exit(exception=KeyboardInterrupt)

    return bindings


class Chat:
    """Slash commands and turns, dispatched to a `Conversation`, with their output."""

    def __init__(self, conversation: Conversation, *, interactive: bool, stats: bool = False,
                 quiet: bool = False, verbose: bool = False) -> None:
        self.conversation = conversation
        self.interactive = interactive
        self.stats = stats or interactive
        self.quiet = quiet
        self.verbose = verbose
        self.handlers: dict[str, Callable[[str], bool | None]] = {
            name: getattr(self, f"_{name}") for name in COMMANDS
        }

    def banner(self) -> None:
        info = self.conversation.engine.info
        plan = self.conversation.plan()
        console.err.print(
            f"[bold]llmgen chat[/] · {escape(info.model)} · quant {info.quant} · {info.device} · {info.dtype} "
            f"· preset [bold]{escape(plan.preset)}[/] ({plan.strategy})"
        )
        console.note("/help for commands · Ctrl-D or /exit to leave · \"\"\" opens a multi-line block")
        self._warn(plan)

    def handle(self, text: str) -> bool:
        """Run one input: a slash command or a user turn. False means leave.

        The chat's error boundary: nothing typed ends the session but /exit (and Ctrl-D, upstream).
        A failure of any kind is one error line, and leaves the conversation as it was: commands
        change its state only once they have succeeded, a reply joins it only once generated.
        """
        command = parse_command(text)
        try:
            if command is None:
                message = _checked_text(text.removeprefix("/"))
                self._answer(lambda **kw: self.conversation.reply(message, **kw))
                return True
            name, arg = command
            if name not in self.handlers:
                close = difflib.get_close_matches(name, list(COMMANDS), n=1)
                hint = f"did you mean /{close[0]}? " if close else ""
                raise UsageError(f"unknown command /{name}",
                                 hint=f"{hint}/help lists the commands; start a message with // to send a '/'")
            return self.handlers[name](arg) is not False
        except UsageError as exc:
            console.error(str(exc), hint=exc.hint)
            return True
        except Exception as exc:  # a bug or a library's refusal: still one line, the session goes on
            if self.verbose:
                console.err.print_exception()
            error = explain(exc)
            console.error(str(error), hint=None if self.verbose and error.hint == VERBOSE_HINT else error.hint)
            return True

    def _answer(self, generate: Callable[..., Turn]) -> None:
        """Generate a reply: streamed to stdout as it comes, or printed when done (beams)."""
        streams = self.conversation.plan().streams
        turn = generate(on_text=console.out if streams else None, on_trim=self._trimmed)
        result = turn.result
        if result is not None and not streams:
            console.out(result.text)
        if result is not None or turn.interrupted:
            console.out("\n")
        if turn.interrupted:
            kept = result is not None and bool(result.text)
            console.note("[interrupted: the partial reply is kept]" if kept else "[interrupted: nothing to keep]")
            if not self.interactive:
                raise KeyboardInterrupt
        if result is not None and self.stats:
            console.note(self._stats_line(result))

    def _stats_line(self, result: Any) -> str:
        line = console.stats_line(result, self.conversation.plan().config.max_new_tokens, RAISE_MAX_NEW_TOKENS)
        reused = result.extra.get("cached_tokens", 0)
        return f"{line} · {reused} prompt tokens reused" if reused else line

    def _trimmed(self, dropped: int) -> None:
        if not self.quiet:
            limit = self.conversation.engine.context_length
            max_new = self.conversation.plan().config.max_new_tokens
            console.warning(
                f"the conversation no longer fits the context ({limit} tokens with max_new_tokens={max_new} "
                f"to spare): the {dropped} oldest messages are dropped from what the model sees"
            )

    def _warn(self, plan: Plan) -> None:
        if not self.quiet:
            for warning in plan.warnings:
                console.warning(warning)

    def _help(self, arg: str) -> None:
        usages = {name: f"/{name} {args}".rstrip() for name, (args, _) in COMMANDS.items()}
        width = max(map(len, usages.values()))
        for name, (args, what) in COMMANDS.items():
            # padded as plain text: markup and its escapes take no columns
            after = escape(usages[name].removeprefix(f"/{name}").ljust(width - len(name) - 1))
            console.err.print(f"  [bold]/{name}[/]{after}  {escape(what)}")
        console.note('A line ending in \\ continues on the next; """ opens and closes a multi-line block.')
        console.note("Ctrl-C stops a reply (what came is kept); Ctrl-D or /exit leaves.")

    def _exit(self, arg: str) -> bool:
        return False

    def _reset(self, arg: str) -> None:
        self.conversation.reset()
        console.note("conversation cleared")

    def _system(self, arg: str) -> None:
        if not arg:
            system = self.conversation.system
            console.note(f"system prompt: {system}" if system is not None else "no system prompt (the template's default)")
            return
        self.conversation.system = None if arg == "-" else _checked_text(arg)
        console.note("system prompt removed" if arg == "-" else "system prompt set for the next replies")

    def _preset(self, arg: str) -> None:
        if not arg:
            names = ", ".join(sorted(presets.discover()))
            console.note(f"preset {self.conversation.preset.name}; available: {names}")
            return
        plan = self.conversation.use_preset(arg)
        console.note(f"preset {plan.preset} ({plan.strategy}) for the next replies")
        self._warn(plan)

    def _set(self, arg: str) -> None:
        if not arg:
            raise UsageError("/set needs KEY=VALUE", hint="for example /set temperature=0.5 max_new_tokens=64")
        plan = self.conversation.update_settings(_SET_PAIRS.split(arg))
        console.note(f"settings for the next replies: {self.conversation.overrides or 'the preset as it is'}")
        self._warn(plan)

    def _schema(self, arg: str) -> None:
        if not arg:
            raise UsageError("/schema needs a JSON Schema file or inline JSON, or - to remove it")
        plan = self.conversation.update_settings([f"json_schema={'' if arg == '-' else arg}"])
        console.note(f"constraint for the next replies: {plan.constraint.kind if plan.constraint else 'none'}")

    def _show(self, arg: str) -> None:
        from llmgen.settings import effective

        conversation = self.conversation
        info = conversation.engine.info
        plan = conversation.plan()
        show = console.err.print
        show(f"[bold]model[/] {escape(info.model)} · {info.device} · {info.dtype} · quant {info.quant} "
             f"({escape(info.quant_reason)}) · context {info.context_length} tokens")
        show(f"[bold]preset[/] {escape(plan.preset)} ({plan.strategy})")
        system = conversation.system
        show(f"[bold]system[/] {escape(system) if system is not None else '(the template default)'}")
        if conversation.overrides:
            show(f"[bold]your settings[/] {escape(str(conversation.overrides))}")
        show("[bold]effective generation settings[/]")
        for key, value in effective(plan.config).items():
            show(f"  {key}: {escape(repr(value))}")

    def _retry(self, arg: str) -> None:
        self._answer(self.conversation.retry)

    def _undo(self, arg: str) -> None:
        removed = self.conversation.undo()
        console.note(f"dropped the last exchange ({removed} messages)")

    def _save(self, arg: str) -> None:
        if not arg:
            raise UsageError("/save needs a file name")
        self.conversation.save(Path(arg))
        console.note(f"saved {len(self.conversation.messages)} messages to {arg}")

    def _load(self, arg: str) -> None:
        if not arg:
            raise UsageError("/load needs a file name")
        self.restore(Path(arg))

    def restore(self, path: Path, flags: Flags | None = None) -> None:
        """Continue a saved transcript (/load; --load, where the command line's `flags` override it)."""
        for warning in self.conversation.restore(read_transcript(path), flags):
            console.warning(warning)
        conversation = self.conversation
        console.note(f"loaded {len(conversation.messages)} messages from {path} · preset {conversation.preset.name}")

    def _stats(self, arg: str) -> None:
        conversation = self.conversation
        totals = conversation.totals
        limit = conversation.engine.context_length
        console.err.print(
            f"replies {totals.replies} · messages {len(conversation.messages)} "
            f"({len(conversation.window)} in the model's window) · last prompt {totals.window_tokens} of {limit} tokens"
        )
        console.err.print(
            f"prompt tokens {totals.prompt_tokens} ({totals.reused_tokens} reused from the cache) · "
            f"new tokens {totals.completion_tokens} · {totals.seconds:.2f}s generating"
        )
        if totals.last is not None:
            console.err.print(f"last reply: {self._stats_line(totals.last)}")


def _checked_text(text: str) -> str:
    """Text for the model: bytes that are not UTF-8 (piped input keeps them as surrogates) are refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"the input is not valid UTF-8 text (character {exc.start + 1})") from None
    return text


def run(chat: Chat) -> None:
    """Read turns until Ctrl-D, /exit or the end of the input."""
    inputs = terminal_inputs() if chat.interactive else piped_inputs(sys.stdin)
    if chat.interactive and not chat.quiet:
        chat.banner()
    for text in inputs:
        try:
            if not chat.handle(text):
                return
        except KeyboardInterrupt:
            if not chat.interactive:
                raise
            console.note("[interrupted]")
