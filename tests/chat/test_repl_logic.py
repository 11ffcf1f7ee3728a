"""Input assembly, slash-command parsing and dispatch, without a terminal."""

from __future__ import annotations

import pytest

from llmgen import console, presets
from llmgen.chat import Conversation
from llmgen.repl import COMMANDS, Chat, finish, is_complete, parse_command, piped_inputs


@pytest.mark.parametrize(
    ("text", "complete", "message"),
    [
        ("hello", True, "hello"),
        ("first \\", False, None),
        ("first \\\nsecond", True, "first \nsecond"),
        ('"""', False, None),
        ('"""\nline one\nline two', False, None),
        ('"""\nline one\n  line two\n"""', True, "line one\n  line two"),
        ('"""inline"""', True, "inline"),
        ('""""', False, None),
    ],
)
def test_continuation_and_blocks(text: str, complete: bool, message: str | None) -> None:
    assert is_complete(text) is complete
    if complete:
        assert finish(text) == message


def test_piped_lines_become_turns() -> None:
    lines = ["hi\n", "\n", "/stats\n", "a \\\n", "b\n", '"""\n', "x\n", "\n", 'y"""\n', '"""\n', "unclosed\n"]
    assert list(piped_inputs(lines)) == ["hi", "/stats", "a \nb", "x\n\ny", "unclosed"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/help", ("help", "")),
        ("/SET temperature=0.5 top_k=3", ("set", "temperature=0.5 top_k=3")),
        ("/system  You are terse. ", ("system", "You are terse.")),
        ("/quit", ("exit", "")),
        ("/regen", ("retry", "")),
        ("hello /help", None),
        ("//etc/hosts is a file", None),
    ],
)
def test_parse_command(text: str, parsed: tuple[str, str] | None) -> None:
    assert parse_command(text) == parsed


@pytest.fixture
def chat(tiny_engine) -> Chat:
    conversation = Conversation(tiny_engine, presets.resolve("greedy"), overrides={"max_new_tokens": 4})
    return Chat(conversation, interactive=False)


def test_help_lists_every_command(chat: Chat, capsys) -> None:
    assert chat.handle("/help")
    err = capsys.readouterr().err
    assert all(f"/{name}" in err for name in COMMANDS)


def test_bad_input_is_one_error_line_and_the_session_goes_on(chat: Chat, capsys) -> None:
    for line in ("/sett top_k=3", "/set top_k=-1", "/set", "/preset nope", "/undo", "/retry", "/load /no/such.json",
                 "/save"):
        assert chat.handle(line) is True
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error: ") and captured.err.count("error:") == 1, line
    assert chat.conversation.overrides == {"max_new_tokens": 4}
    assert "did you mean /set?" in _run(chat, "/sett x=1", capsys).err


def test_an_unexpected_failure_is_one_error_line_and_the_conversation_is_unchanged(chat: Chat, capsys,
                                                                                   monkeypatch) -> None:
    chat.handle("Hello")
    capsys.readouterr()
    before = list(chat.conversation.messages)

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    with monkeypatch.context() as patch:
        patch.setattr(chat.conversation.engine, "generate", broken)
        assert chat.handle("Again") is True
        captured = capsys.readouterr()
        assert captured.err.splitlines() == ["error: boom", "hint: run with -v for the traceback"]
        chat.verbose = True
        assert chat.handle("/retry") is True
        assert "Traceback" in capsys.readouterr().err
    assert chat.conversation.messages == before
    assert chat.handle("Again") and len(chat.conversation.messages) == len(before) + 2


def test_the_stats_line_says_how_the_caller_raises_max_new_tokens(chat: Chat) -> None:
    result = chat.conversation.reply("Hello").result
    assert result.finish_reason == "length"
    assert chat._stats_line(result).endswith("max_new_tokens=4, raise it with /set max_new_tokens=N")
    assert console.stats_line(result, 4, "-n").endswith("max_new_tokens=4, raise it with -n")
    assert console.stats_line(result, 4).endswith("finish: length: stopped at max_new_tokens=4")


def test_set_values_with_spaces_and_lists(chat: Chat, capsys) -> None:
    chat.handle('/set stop_strings=["a b", "c"] top_k=3')
    assert chat.conversation.overrides["stop_strings"] == ["a b", "c"]
    assert chat.conversation.overrides["top_k"] == 3


def test_a_turn_prints_only_the_reply_on_stdout(chat: Chat, capsys) -> None:
    assert chat.handle("Hello")
    captured = capsys.readouterr()
    assert captured.out == chat.conversation.messages[-1]["content"] + "\n"
    assert chat.handle("//slash at the start")
    assert chat.conversation.messages[-2]["content"] == "/slash at the start"


def test_exit_ends_and_system_shows_sets_and_removes(chat: Chat, capsys) -> None:
    chat.handle("/system Be terse.")
    assert chat.conversation.system == "Be terse."
    assert "Be terse." in _run(chat, "/system", capsys).err
    chat.handle("/system -")
    assert chat.conversation.system is None
    assert chat.handle("/exit") is False and chat.handle("/quit") is False


def _run(chat: Chat, line: str, capsys):
    chat.handle(line)
    return capsys.readouterr()
