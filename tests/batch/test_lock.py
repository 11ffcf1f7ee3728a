"""The output lock in-process: refused while held, released at exit, a killed run's lock file reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmgen.batch import lock_output
from llmgen.errors import UsageError


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
