"""The one translation from library failures to what the user reads (`llmgen.errors.explain`): each class of
failure raised for real by the library that raises it, then its message and exit code."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import yaml

from llmgen.errors import VERBOSE_HINT, LlmgenError, UsageError, explain


def raised(fn) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


def test_json_yaml_and_utf8_failures_are_usage_errors_with_the_place() -> None:
    error = explain(raised(lambda: json.loads('{"a": 1,}')))
    assert isinstance(error, UsageError) and str(error).startswith("invalid JSON: ") and "column 9" in str(error)
    error = explain(raised(lambda: yaml.safe_load("a: [1")))
    assert isinstance(error, UsageError) and str(error).startswith("invalid YAML: ")
    error = explain(raised(lambda: b"caf\xe9".decode()))
    assert isinstance(error, UsageError) and str(error) == "not UTF-8 text (byte 3)"


def test_os_errors_name_the_path_and_only_the_users_own_mistakes_exit_2(tmp_path: Path) -> None:
    missing = explain(raised(lambda: (tmp_path / "nope.txt").read_text()))
    assert isinstance(missing, UsageError) and str(missing) == f"{tmp_path / 'nope.txt'}: No such file or directory"
    folder = explain(raised(lambda: tmp_path.read_text()))
    assert isinstance(folder, UsageError) and "Is a directory" in str(folder)
    full = explain(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.jsonl")))
    assert type(full) is LlmgenError and full.exit_code == 1
    assert str(full).endswith("out.jsonl: No space left on device")


def test_a_corrupt_safetensors_file_is_a_usage_error(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    error = explain(raised(lambda: load_file(path)))
    assert isinstance(error, UsageError) and str(error).startswith("model file is truncated or corrupt")
    assert "SafetensorError" not in str(error)


def test_a_generation_setting_transformers_refuses_is_a_usage_error() -> None:
    from transformers import GenerationConfig

    error = explain(raised(lambda: GenerationConfig(num_beams=2, num_return_sequences=3).validate(strict=True)))
    assert isinstance(error, UsageError) and str(error).startswith("generation settings: ")
    assert "ValueError" not in str(error)


def test_out_of_memory_is_a_runtime_failure_that_says_what_to_try() -> None:
    error = explain(MemoryError())
    assert type(error) is LlmgenError and str(error) == "out of memory" and "--quant 4bit" in error.hint


def test_anything_else_is_its_first_line_without_the_class_name_and_points_at_v() -> None:
    error = explain(RuntimeError("boom\nsecond line"))
    assert (type(error), str(error), error.hint, error.exit_code) == (LlmgenError, "boom", VERBOSE_HINT, 1)
    assert str(explain(KeyError())) == "KeyError"  # no message at all: the class is all there is to say
    usage = UsageError("already in the user's words")
    assert explain(usage) is usage
