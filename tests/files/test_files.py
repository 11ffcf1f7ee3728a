"""`write_atomic`: a failed write leaves the old file whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgen.files import write_atomic


def test_writes_text_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    write_atomic(path, "first")
    path.chmod(0o640)
    write_atomic(path, "second ü")
    assert path.read_text(encoding="utf-8") == "second ü"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    write_atomic(path, "old")

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_atomic(path, Boom())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]
