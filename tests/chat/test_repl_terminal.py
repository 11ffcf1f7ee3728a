"""The real `llmgen chat` on the built-in model: in a pseudo-terminal (pexpect) and with piped stdin."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pexpect
import pytest

from tests.conftest import LLMGEN

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
REPLY_DONE = r"finish: [a-z]+"


class Repl:
    """`llmgen chat` in a pseudo-terminal, driven line by line."""

    def __init__(self, *args: str, timeout: float = 120) -> None:
        # prompt_toolkit asks the terminal for the cursor position; pexpect has no terminal to answer.
        env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"}
        self.child = pexpect.spawn(str(LLMGEN), ["chat", *args], env=env, encoding="utf-8", timeout=timeout,
                                   dimensions=(50, 250))
        self.banner = self.until(">>>")

    def until(self, pattern: str) -> str:
        """Everything shown up to and including `pattern`, without terminal escapes."""
        self.child.expect(pattern)
        return ANSI.sub("", self.child.before + self.child.after)

    def send(self, line: str, expect: str) -> str:
        """Type a line; return what was shown up to `expect`, then wait for the next prompt."""
        self.child.send(line + "\r")
        shown = self.until(expect)
        self.until(">>>")
        return shown

    def exit_status(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


def reply_of(shown: str, typed: str) -> str:
    """The reply text in what a turn showed: after the echoed input line, before the stats line."""
    after = shown.split(typed, 1)[1]
    return after.split("\n", 1)[1].rsplit("\n", 1)[0].strip()


def test_a_whole_session_every_command(tmp_path: Path, user_dirs: Path) -> None:
    repl = Repl("-p", "greedy", "-n", "8")
    assert "llmgen chat" in repl.banner and "preset greedy" in repl.banner and "quant none" in repl.banner

    shown = repl.send("hi", REPLY_DONE)
    first_reply = reply_of(shown, "hi")
    assert first_reply and "8 new tokens" in shown

    assert "/retry" in repl.send("/help", "leaves")
    assert "max_new_tokens: 8" in repl.send("/show", "max_new_tokens: 8")
    repl.send("/set top_k=-3", "/set: top_k: Input should be")
    repl.send("/set max_new_tokens=6", "settings for the next replies")
    repl.send("/preset nope", "unknown preset")
    repl.send("/preset beam", r"preset beam \(beam\)")
    assert reply_of(repl.send("Say hello", REPLY_DONE), "Say hello")  # beams: printed when done
    repl.send("/preset greedy", r"preset greedy \(greedy\)")
    repl.send("/system You are a pirate.", "system prompt set")
    repl.send("/retry", REPLY_DONE)

    repl.child.send('"""\r')
    repl.child.send("line one\r")
    repl.send('line two"""', REPLY_DONE)
    repl.child.send("first \\\r")
    repl.send("second", REPLY_DONE)
    repl.send("/undo", r"dropped the last exchange \(2 messages\)")

    saved = tmp_path / "chat.json"
    repl.send(f"/save {saved}", "saved 6 messages")
    transcript = json.loads(saved.read_text())
    assert [m["content"] for m in transcript["messages"][::2]] == ["hi", "Say hello", "line one\nline two"]
    assert transcript["messages"][1]["content"] == first_reply
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"] * 3
    assert transcript["preset"] == "greedy" and transcript["settings"]["max_new_tokens"] == 6
    assert transcript["system"] == "You are a pirate." and "SmolLM2" in transcript["model"]

    repl.send("/reset", "conversation cleared")
    assert "messages 0" in repl.send("/stats", "new tokens")
    repl.send(f"/load {saved}", "loaded 6 messages")
    stats = repl.send("/stats", "last reply")
    assert "messages 6" in stats and "replies 5" in stats
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    repl.send(f"/load {bad}", "invalid JSON at line 1")
    repl.send("/stats", "messages 6")  # a bad file changes nothing

    repl.child.send("\x03")  # Ctrl-C on an empty prompt: a hint, not an exit
    repl.until(r"\(to leave: Ctrl-D or /exit\)")
    repl.until(">>>")
    repl.child.send("\x04")
    assert repl.exit_status() == 0
    history = (user_dirs / "state" / "llmgen" / "history").read_text()
    assert "+hi" in history and "+/preset beam" in history


def test_ctrl_c_stops_a_streaming_reply_and_the_session_goes_on(tmp_path: Path) -> None:
    repl = Repl("-p", "greedy", "-n", "400", "--set", "min_new_tokens=400")
    repl.child.send("Write a long story about a brave knight and a dragon.\r")
    repl.until("dragon\\.")
    shown = repl.until(r"\n[^\n>]*[A-Za-z]{3}")  # the reply has begun to stream
    repl.child.send("\x03")
    shown += repl.until(r"\[interrupted: the partial reply is kept\]")
    repl.until(">>>")
    saved = tmp_path / "cut.json"
    repl.send(f"/save {saved}", "saved 2 messages")
    cut = json.loads(saved.read_text())["messages"][-1]
    assert cut["interrupted"] is True
    streamed = shown.rsplit("dragon.", 1)[1].split("^C")[0].strip()  # after the echoed input
    assert streamed and " ".join(cut["content"].split()).startswith(" ".join(streamed.split()))

    repl.send("/set max_new_tokens=4 min_new_tokens=0", "settings")
    repl.send("Thanks!", REPLY_DONE)
    repl.send(f"/save {saved}", "saved 4 messages")
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2 and "interrupted" not in messages[-1]
    repl.child.send("/exit\r")
    assert repl.exit_status() == 0


@pytest.fixture
def small_context_model(tmp_path: Path) -> Path:
    """The built-in model's files with a 160-token context: a few turns fill it."""
    from llmgen import models

    source = models.gguf_cache(models.builtin_gguf())
    target = tmp_path / "small-context"
    target.mkdir()
    for path in source.iterdir():
        if path.name != "config.json":
            (target / path.name).symlink_to(path)
    config = json.loads((source / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 160}))
    return target


def test_load_at_start_and_trimming_when_the_context_fills(tmp_path: Path, small_context_model: Path) -> None:
    question = "Please describe the old harbour town, its narrow streets, its fishing boats and its market. " * 2
    answer = "The harbour town is old and quiet, with narrow streets, small boats and a busy market. " * 2
    messages = [{"role": r, "content": c} for _ in range(2) for r, c in (("user", question), ("assistant", answer))]
    transcript = tmp_path / "long.json"
    transcript.write_text(json.dumps({"preset": "greedy", "settings": {"max_new_tokens": 8}, "messages": messages}))

    repl = Repl("-m", str(small_context_model), "--load", str(transcript), "--system", "Be brief.")
    assert "loaded 4 messages" in repl.banner
    shown = repl.send("And the lighthouse?", REPLY_DONE)
    assert re.search(r"the \d+ oldest messages are dropped", " ".join(shown.split()))
    stats = repl.send("/stats", "last reply")
    assert re.search(r"messages 6 \([24] in the model's window\) · last prompt \d+ of 160 tokens", stats)
    saved = tmp_path / "after.json"
    repl.send(f"/save {saved}", "saved 6 messages")  # the transcript keeps what left the window
    assert json.loads(saved.read_text())["system"] == "Be brief."
    repl.child.send("\x04")
    assert repl.exit_status() == 0


def test_piped_stdin_each_line_a_turn_only_replies_on_stdout(cli, tmp_path: Path) -> None:
    script = 'hi\n/set bogus=1\n"""\nline one\nline two\n"""\n/stats\n'
    proc = cli("chat", "-p", "greedy", "-n", "6", input=script)
    assert proc.returncode == 0, proc.stderr
    replies = proc.stdout.split("\n")
    assert len([r for r in replies if r]) == 2 and proc.stdout.endswith("\n")
    assert "error: /set: unknown generation setting 'bogus'" in proc.stderr
    assert "replies 2 · messages 4" in proc.stderr
    assert ">>>" not in proc.stdout + proc.stderr and "llmgen chat" not in proc.stderr


def test_a_bad_transcript_given_with_load_fails_before_the_model_loads(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "user", "content": "a"}]}')
    proc = cli("chat", "--load", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "must alternate" in proc.stderr
