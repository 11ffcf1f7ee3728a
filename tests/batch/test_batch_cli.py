"""`llmgen batch` on the built-in model: equal to each prompt alone, stdin/stdout, SIGKILL then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from llmgen import presets
from llmgen.engine import Request
from tests.batch.batch_helpers import jsonl, records, run_bytes

QUESTIONS = [
    "Hi!",
    "What is the capital of France?",
    "Name three colours of the rainbow, please.",
    "Write one sentence about the sea and the wind and the old lighthouse keeper.",
    "2+2?",
    "Why is the sky blue? Answer in one short sentence for a child.",
    "Say hello in Spanish.",
    "What do bees make?",
    "Give me a word that rhymes with cat.",
    "Which planet is the largest in our solar system?",
]
INPUT = jsonl(
    *[{"id": f"q{i}", "prompt": q} for i, q in enumerate(QUESTIONS[:4])],
    b"{not json",
    {"id": "q1", "prompt": "a duplicate"},
    *[{"id": f"q{i}", "messages": [{"role": "user", "content": q}]} for i, q in enumerate(QUESTIONS[4:], 4)],
)
FLAGS = ["-n", "8", "--batch-size", "3"]


ERRORS = {  # line number: the error record SPEC.md asks for, written out by hand
    5: {"id": 5, "line": 5, "error": "invalid JSON: Expecting property name enclosed in double quotes (column 2)"},
    6: {"id": "q1", "line": 6, "error": 'duplicate id "q1" (first on line 2)'},
}


@pytest.fixture(scope="module")
def reference(builtin_engine) -> bytes:
    """The uninterrupted output, built from each prompt generated alone (not by the batch code under test)."""
    plan = builtin_engine.plan(presets.resolve("greedy"), {"max_new_tokens": 8})
    lines = []
    for number, record in enumerate(map(json.loads, INPUT.decode().splitlines()[:4]), 1):
        lines.append(_alone(builtin_engine, plan, number, record["id"], Request(prompt=record["prompt"])))
    lines += [ERRORS[5], ERRORS[6]]
    for number, question in enumerate(QUESTIONS[4:], 7):
        messages = [{"role": "user", "content": question}]
        lines.append(_alone(builtin_engine, plan, number, f"q{number - 3}", Request(messages=messages)))
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)


def _alone(engine, plan, line: int, id: str, request: Request) -> dict:
    result = engine.generate(request, plan)
    usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}
    return {"id": id, "line": line, "text": result.text, "finish_reason": result.finish_reason, "usage": usage,
            "preset": "greedy"}


def test_batched_output_equals_each_prompt_alone(builtin_engine, reference) -> None:
    out, summary = run_bytes(builtin_engine, INPUT, batch_size=3, max_new_tokens=8)
    assert out == reference and summary.errors == 2


def test_stdin_to_stdout_equals_llmgen_run_for_each_prompt(cli, reference) -> None:
    proc = cli("batch", "-", *FLAGS, input=INPUT)
    assert proc.returncode == 3, proc.stderr  # the bad line and the duplicate failed
    assert proc.stdout.encode() == reference
    assert "batch: 12 records · 2 errors" in proc.stderr and "tokens/s" in proc.stderr
    by_id = {r["id"]: r for r in records(reference) if "error" not in r}
    for id, question in (("q0", QUESTIONS[0]), ("q9", QUESTIONS[9])):  # and the installed `llmgen run` agrees
        alone = json.loads(cli("run", question, "-n", "8", "--json").stdout)
        assert (by_id[id]["text"], by_id[id]["usage"]) == (alone["text"], alone["usage"])


def test_a_fifo_is_read_as_a_stream_and_dev_null_is_an_empty_batch(cli, tmp_path: Path, reference) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(INPUT,))  # like `llmgen batch <(cat in.jsonl)`
    writer.start()
    proc = cli("batch", str(fifo), *FLAGS)
    writer.join()
    assert proc.returncode == 3 and proc.stdout.encode() == reference, proc.stderr
    empty = cli("batch", os.devnull, *FLAGS)
    assert (empty.returncode, empty.stdout) == (0, ""), empty.stderr
    assert "batch: 0 records" in empty.stderr


def test_an_existing_output_is_not_overwritten_without_resume(cli, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(INPUT)
    (tmp_path / "out.jsonl").write_text('{"id": 1, "line": 1, "text": "kept"}\n')
    proc = cli("batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2 and "--resume" in proc.stderr
    assert cli("batch", "-", "--resume").returncode == 2


def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_file(reference, tmp_path: Path) -> None:
    from tests.conftest import LLMGEN

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(INPUT)
    command = [str(LLMGEN), "batch", str(source), "-o", str(out), *FLAGS, "-q", "--resume"]
    for kill_after_lines in (0, 2, 7):  # 0: during start-up, before any output
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (1 if kill_after_lines == 0 else 120)
        while proc.poll() is None and time.monotonic() < deadline and _lines(out) < max(kill_after_lines, 1):
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        written = out.read_bytes() if out.exists() else b""
        assert reference.startswith(written[: written.rfind(b"\n") + 1])
    final = subprocess.run(command, capture_output=True, timeout=300)
    assert final.returncode == 3, final.stderr
    assert out.read_bytes() == reference


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


LOCK_FLAGS = ["-n", "2", "--batch-size", "1", "-q"]
LOCK_INPUT = jsonl(*[{"id": f"p{i}", "prompt": q} for i, q in enumerate(QUESTIONS * 3)])


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_second_batch_on_the_same_output_is_refused_at_once_with_the_holders_pid(
        cli, tmp_path: Path, resume: bool) -> None:
    from tests.conftest import LLMGEN

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(LOCK_INPUT)
    args = ["batch", str(source), "-o", str(out), *LOCK_FLAGS, *(["--resume"] if resume else [])]
    first = subprocess.Popen([str(LLMGEN), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # fresh: as soon as the first holds the lock (before its model loads); resume: once it has written
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and (
                _lines(out) < 1 if resume else not (tmp_path / ".out.jsonl.lock").exists()):
            time.sleep(0.01)
        assert first.poll() is None, "the first run ended before the second could start"
        second = cli(*args)
        refused_at_once = first.poll() is None
    finally:
        _, first_err = first.communicate(timeout=300)
    assert second.returncode == 2 and second.stdout == "", second.stderr
    assert refused_at_once, "the second run must end while the first still holds the output"
    error = second.stderr.splitlines()[0]
    assert error.startswith("error: ") and f"pid {first.pid}" in error and str(out) in error
    assert first.returncode == 0, first_err
    written = records(out.read_bytes())
    assert [r["id"] for r in written] == [f"p{i}" for i in range(len(QUESTIONS) * 3)]
    assert all("text" in r for r in written)
    assert not (tmp_path / ".out.jsonl.lock").exists()
