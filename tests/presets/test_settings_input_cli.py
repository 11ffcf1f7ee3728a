"""Hostile or mistyped settings through the real `llmgen` command: refused at once with exit 2, naming where.

Presets, config.yaml and `--set` values are read by one YAML reader that refuses anchors and aliases;
every setting's value is type-checked and bounded before any model loads.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from llmgen import presets
from tests.conftest import light_cli


def alias_bomb() -> str:
    """A ~400-byte preset whose aliases expand `bad_words_ids` to 2 * 10**9 values."""
    value = "[1, 2]"
    for name in "abcdefghi":
        value = f"[&{name} {value}" + f", *{name}" * 9 + "]"
    return f"generation:\n  max_new_tokens: 2\n  bad_words_ids: {value}\n"


def user_preset(name: str, content: str | bytes) -> Path:
    path = presets.user_dir() / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def assert_refused(proc: subprocess.CompletedProcess, *parts: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", [["run", "hi", "-n", "2", "-p"], ["presets", "show"]])
def test_alias_bomb_preset_is_refused_at_once_with_exit_2(cli, tmp_path: Path, command: list[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    started = time.monotonic()
    proc = cli(*command, str(bomb), timeout=30)
    assert time.monotonic() - started < 15  # the process start; the refusal itself is instant
    assert_refused(proc, "bomb.yaml: line 3, column ", "anchors and aliases")


def test_aliases_in_config_yaml_and_set_values_are_refused(cli, user_dirs: Path) -> None:
    config = user_dirs / "config" / "llmgen" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("model: &m builtin\npreset: *m\n")
    assert_refused(cli("run", "hi", "-n", "2"), "config.yaml: line 1, column 8", "anchors and aliases")
    config.unlink()
    assert_refused(cli("run", "hi", "-n", "2", "--set", "bad_words_ids=[&a [1], *a]"),
                   "--set bad_words_ids: line 1, column 2", "anchors and aliases")


def test_oversized_setting_value_is_refused_naming_the_bound(cli, tmp_path: Path) -> None:
    words = ", ".join(["[1, 2]"] * 40_000)
    big = tmp_path / "big.yaml"
    big.write_text(f"generation:\n  bad_words_ids: [{words}]\n")
    assert_refused(cli("run", "hi", "-n", "2", "-p", str(big)), "big.yaml: bad_words_ids: more than 100,000 values")


def test_non_utf8_config_yaml_is_refused_naming_it(cli, user_dirs: Path) -> None:
    config = user_dirs / "config" / "llmgen" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_bytes(b"model: \xff\n")
    assert_refused(cli("run", "hi", "-n", "2"), "config.yaml: not UTF-8 text (byte 7)")


BROKEN = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "binary.yaml: not UTF-8 text (byte 0)"),
    "typed": ("generation:\n  max_new_tokens: abc\n", 'max_new_tokens must be an integer, got the string "abc"'),
    "ranged": ("extends: sampling\ngeneration:\n  top_p: 7\n", "ranged.yaml: top_p: Input should be less than"),
    "nul": ("generation: \x00\n", "nul.yaml: line 1, column 13: invalid YAML: unacceptable character #x0000"),
    "bomb": (alias_bomb(), "bomb.yaml: line 3, column 19: invalid YAML: anchors and aliases"),
    "unstoppable": ('generation:\n  stop_strings: [""]\n', "an empty stop string"),
}


def test_presets_list_lists_good_presets_and_marks_each_broken_one(cli) -> None:
    for name, (content, _) in BROKEN.items():
        user_preset(name, content)
    user_preset("mine", "extends: greedy\ngeneration:\n  max_new_tokens: 3\n")
    proc = cli("presets", "list", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rows = {line.split("\t")[0]: line.split("\t") for line in proc.stdout.splitlines()}
    assert rows["mine"][1:3] == ["greedy", "user"] and rows["greedy"][1] == "greedy"
    for name, (_, problem) in BROKEN.items():
        assert rows[name][1:3] == ["invalid", "user"], rows[name]
        assert problem in rows[name][3], rows[name]
    assert len(rows) == len(presets.discover())


def test_presets_list_checks_values_without_importing_torch_or_transformers() -> None:
    user_preset("typed", BROKEN["typed"][0])
    out, heavy = light_cli(["presets", "list"])
    assert "must be an integer" in out and heavy == []


def test_presets_show_of_a_binary_file_is_exit_2_naming_it(cli) -> None:
    path = user_preset("binary", BROKEN["binary"][0])
    assert_refused(cli("presets", "show", "binary"), f"{path}: not UTF-8 text")


def test_empty_stop_string_is_refused_on_the_command_line_and_in_presets(cli, tmp_path: Path) -> None:
    assert_refused(cli("run", "hi", "-n", "2", "--stop", ""), "stop_strings: an empty stop string")
    assert_refused(cli("run", "hi", "-n", "2", "--set", 'stop_strings=[".", ""]'), "an empty stop string")
    preset = tmp_path / "stops.yaml"
    preset.write_text('generation:\n  stop_strings: [""]\n')
    assert_refused(cli("run", "hi", "-n", "2", "-p", str(preset)), "stops.yaml: stop_strings: an empty stop string")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (['max_new_tokens="5"'], '--set: max_new_tokens must be an integer, got the string "5"'),
        (['temperature="0.5"', "do_sample=true"], '--set: temperature must be a number, got the string "0.5"'),
        (["max_new_tokens=true"], "--set: max_new_tokens must be an integer, got true"),
        (["do_sample=1"], "--set: do_sample must be true or false, got 1"),
    ],
)
def test_mistyped_set_values_are_refused_naming_set(cli, sets: list[str], message: str) -> None:
    args = [arg for pair in sets for arg in ("--set", pair)]
    assert_refused(cli("run", "hi", "-n", "2", *args), message)


def test_mistyped_preset_value_is_refused_naming_the_file(cli, tmp_path: Path) -> None:
    preset = tmp_path / "typed.yaml"
    preset.write_text('extends: sampling\ngeneration:\n  max_new_tokens: "5"\n  temperature: 0.5\n')
    assert_refused(cli("run", "hi", "-p", str(preset)),
                   f'{preset}: max_new_tokens must be an integer, got the string "5"')
