"""The real `llmgen chat` with piped stdin: no input ends the session, a failed /save keeps the old file."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
from pathlib import Path

import pytest

from llmgen.repl import COMMANDS
from tests.conftest import LLMGEN

pytestmark = pytest.mark.integration

STATS = re.compile(r"^\d+ prompt tokens · .*$", re.MULTILINE)  # the line after each reply


def bad_inputs(tmp_path: Path) -> list[bytes]:
    """Ordinary things a user may type, each of which once ended the session with exit 1."""
    files = {
        "string-number.json": json.dumps({"settings": {"max_new_tokens": "5"}, "messages": []}),
        "deep.json": "[" * 100_000,
        "huge-int.json": '{"messages": [], "settings": {"top_k": 1' + "0" * 5000 + "}}",
        "surrogate.json": json.dumps({"messages": [{"role": "user", "content": "\ud800"},
                                                   {"role": "assistant", "content": "a"}]}),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "noise.yaml").write_bytes(bytes(range(128, 256)) * 16)
    return [
        b'/set max_new_tokens="5"',
        *(f"/load {tmp_path / name}".encode() for name in files),
        f"/preset {tmp_path / 'noise.yaml'}".encode(),
        b"caf\xe9 au lait?",  # Latin-1, not UTF-8
        b"/system \xff",
    ]


def test_bad_inputs_are_one_error_line_each_and_later_turns_still_get_replies(cli, tmp_path: Path) -> None:
    bad = bad_inputs(tmp_path)
    script = b"".join(line + b"\nhi\n" for line in bad) + b"/show\n/stats\n"
    proc = cli("chat", "-p", "greedy", "-n", "2", "--stats", input=script)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    segments = STATS.split(proc.stderr)  # what each bad input showed, up to the reply after it
    assert len(segments) == len(bad) + 1, proc.stderr
    for line, segment in zip(bad, segments):
        assert segment.count("error:") == 1, (line, segment)
    assert len(proc.stdout.splitlines()) == len(bad) and all(proc.stdout.splitlines())
    # the failed commands changed nothing: preset, settings and the history of replies
    assert "preset greedy" in proc.stderr and "your settings {'max_new_tokens': 2}" in proc.stderr
    assert f"replies {len(bad)} · messages {2 * len(bad)}" in proc.stderr


def test_a_string_temperature_is_one_error_line_and_the_next_turn_gets_a_reply(cli) -> None:
    proc = cli("chat", "-p", "greedy", "-n", "2", "--stats", input='/set temperature="0.5"\nhi\n')
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("error:") == 1 and len(STATS.findall(proc.stderr)) == 1
    assert proc.stdout.strip()


def _limit_file_size(limit: int):
    def limit_it() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


def test_a_failed_save_keeps_the_previous_transcript_whole(cli, tmp_path: Path) -> None:
    folder = tmp_path / "transcripts"
    folder.mkdir()
    saved = folder / "chat.json"
    first = cli("chat", "-p", "greedy", "-n", "2", input=f"hi\n/save {saved}\n")
    assert first.returncode == 0 and saved.is_file(), first.stderr
    before = saved.read_bytes()

    limit = 64 * 1024  # a write past it fails with EFBIG, as on a full disk (Python ignores SIGXFSZ)
    assert len(before) < limit
    script = f"/system {'long ' * (limit // 4)}\n/save {saved}\n/stats\n"
    proc = subprocess.run(
        [str(LLMGEN), "chat", "-n", "2", "--load", str(saved)], input=script.encode(), capture_output=True,
        env=os.environ, timeout=300, preexec_fn=_limit_file_size(limit),
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot write {saved}" in errors[0], stderr
    assert "replies 0 · messages 2" in stderr  # the session went on
    assert saved.read_bytes() == before and json.loads(before)["messages"]
    assert [p.name for p in folder.iterdir()] == [saved.name]  # no temporary file left beside it


def test_help_columns_align_and_the_stats_line_says_how_to_raise_max_new_tokens_in_chat(cli) -> None:
    proc = cli("chat", "-p", "greedy", "-n", "2", "--stats", input="/help\nhi\n")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stderr.splitlines() if line.startswith("  /")]
    assert len(rows) == len(COMMANDS)
    starts = {line.index(what) for line, (_, what) in zip(rows, COMMANDS.values())}
    assert len(starts) == 1, "\n".join(rows)
    assert all(line[start - 2 : start] == "  " for line in rows for start in starts)
    assert "finish: length: stopped at max_new_tokens=2, raise it with /set max_new_tokens=N" in proc.stderr
    assert "-n" not in STATS.search(proc.stderr).group()


def test_a_bad_user_preset_is_refused_by_preset_and_by_load_alike(cli, user_dirs: Path, tmp_path: Path) -> None:
    typo = user_dirs / "config" / "llmgen" / "presets" / "typo.yaml"
    typo.parent.mkdir(parents=True)
    typo.write_text("extends: greedy\ngeneration:\n  temprature: 0.5\n")
    transcript = tmp_path / "chat.json"
    transcript.write_text(json.dumps({"preset": "typo", "messages": []}))
    refusal = f"error: {typo}: unknown generation setting 'temprature' (did you mean 'temperature'?)"

    proc = cli("chat", "-p", "greedy", "-n", "2", "--stats", input=f"/preset typo\nhi\n/load {transcript}\nhi\n/show\n")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [refusal, refusal]
    assert len(STATS.findall(proc.stderr)) == 2 and "loaded" not in proc.stderr  # both turns answered
    assert "preset greedy (greedy)" in proc.stderr  # /show: the session kept its preset

    at_start = cli("chat", "-n", "2", "--load", str(transcript), input="hi\n")
    assert at_start.returncode == 2 and at_start.stdout == "" and at_start.stderr == refusal + "\n"
