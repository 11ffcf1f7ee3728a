"""Resuming: recovering a cut output, the ordered writer, and the output lock (in-process)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from llmgen.batch.resume import OrderedWriter, lock_output, recover
from llmgen.errors import UsageError

from tests.batch.batch_helpers import jsonl, prompts, run_bytes


def test_a_held_output_is_refused_naming_the_holder_and_free_again_after(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with lock_output(out, "out.jsonl"):
        assert (tmp_path / ".out.jsonl.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(UsageError, match=rf"^out.jsonl is being written .* \(pid {os.getpid()}\)$"):
            with lock_output(out, "out.jsonl"):
                pass
    assert not (tmp_path / ".out.jsonl.lock").exists()
    with lock_output(out, "out.jsonl"):
        pass


def test_a_killed_runs_lock_file_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".out.jsonl.lock").write_text("999999999\n")
    with lock_output(tmp_path / "out.jsonl", "out.jsonl"):
        assert (tmp_path / ".out.jsonl.lock").read_text() == f"{os.getpid()}\n"


def test_a_symlinked_output_is_locked_beside_its_target(tmp_path: Path) -> None:
    (tmp_path / "real.jsonl").touch()
    (tmp_path / "alias.jsonl").symlink_to(tmp_path / "real.jsonl")
    with lock_output(tmp_path / "real.jsonl", "real.jsonl"):
        with pytest.raises(UsageError, match="alias.jsonl is being written"):
            with lock_output(tmp_path / "alias.jsonl", "alias.jsonl"):
                pass


def test_a_device_output_is_not_locked() -> None:
    with lock_output(Path(os.devnull), os.devnull):
        with lock_output(Path(os.devnull), os.devnull):
            pass


RESUME_INPUT = jsonl(*prompts(5)[:3], b"{broken", {"id": "r0", "prompt": "dup"}, *prompts(7)[3:], {"prompt": "last"})


def test_resume_from_every_kind_of_cut_gives_the_uninterrupted_file(tiny_engine, tmp_path) -> None:
    full, _ = run_bytes(tiny_engine, RESUME_INPUT, batch_size=2, max_new_tokens=3)
    cuts = {0, len(full)}
    start = 0
    for line in full.splitlines(keepends=True):
        cuts |= {start + 1, start + len(line) // 2, start + len(line) - 1, start + len(line)}
        start += len(line)
    out = tmp_path / "out.jsonl"
    for cut in sorted(cuts):
        out.write_bytes(full[:cut])
        done = recover(out)
        assert out.read_bytes() == full[: full.rfind(b"\n", 0, cut) + 1]
        rest, summary = run_bytes(tiny_engine, RESUME_INPUT, batch_size=2, done=done, max_new_tokens=3)
        assert out.read_bytes() + rest == full, cut
        assert summary.failed  # the broken and duplicate lines failed, in this run or the earlier one


def test_resume_refuses_an_output_that_is_not_batch_records(tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("hello\n{}\n")
    with pytest.raises(UsageError, match="line 1 is not an llmgen batch record"):
        recover(out)


def test_the_writer_waits_for_earlier_records_and_flushes_each_prefix() -> None:
    class Stream(io.BytesIO):
        flushed: list[bytes] = []

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    stream = Stream()
    writer = OrderedWriter(stream)
    writer.put(2, {"id": 2})
    writer.put(1, {"id": 1})
    assert stream.getvalue() == b""
    writer.skip(0)
    assert stream.flushed == [b'{"id": 1}\n{"id": 2}\n']
    writer.put(3, {"id": "é"})
    assert stream.flushed[-1].endswith('{"id": "é"}\n'.encode())
