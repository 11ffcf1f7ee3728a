"""config.yaml, and the one reader of the files users write (config.yaml, presets, transcripts): errors name them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmgen import presets
from llmgen.chat import read_transcript
from llmgen.config import config_dir, load_defaults
from llmgen.errors import UsageError


def config_yaml(content: str | bytes) -> Path:
    path = config_dir() / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def read_config(path: Path) -> object:
    config_yaml(path.read_bytes())
    return load_defaults()


def test_defaults_come_from_config_yaml_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config_yaml("preset: precise\nquant: none\n")
    monkeypatch.setenv("LLMGEN_PRESET", "beam")
    defaults = load_defaults()
    assert (defaults.model, defaults.preset, defaults.quant) == ("builtin", "beam", "none")
    config_yaml("")
    assert load_defaults().quant == "auto"  # an empty config.yaml is no setting


def test_a_bad_variable_is_named_and_not_config_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    config_yaml("preset: precise\n")
    monkeypatch.setenv("LLMGEN_QUANT", "3bit")
    with pytest.raises(UsageError, match=r"^\$LLMGEN_QUANT: quant: Input should be 'auto', '4bit'"):
        load_defaults()


READERS = {
    "config.yaml": (read_config, "config.yaml", "a mapping of settings", "- a\n"),
    "preset": (presets.read, "p.yaml", "a mapping with a 'generation:' section", "- a\n"),
    "transcript": (read_transcript, "t.json", "a JSON object with 'messages', as /save writes", "[1]"),
}


@pytest.mark.parametrize("kind", READERS)
def test_every_user_file_is_read_alike_each_error_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    reader, name, expected, not_a_mapping = READERS[kind]
    path = tmp_path / name
    named = config_dir() / "config.yaml" if kind == "config.yaml" else path

    def refused(content: str | bytes) -> str:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(UsageError) as err:
            reader(path)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert refused(b"\xff\xfe") == f"{named}: not UTF-8 text (byte 0)"
    assert refused(not_a_mapping) == f"{named}: expected {expected}, got list"
    assert refused(json.dumps({"modle": "x"}) if kind == "transcript" else "modle: x\n").startswith(
        f"{named}: " + ("messages: Field required" if kind == "transcript" else "unknown key 'modle'"))
    syntax = refused("{1: [" if kind != "transcript" else "{not json")
    assert syntax.startswith(f"{named}: " + ("line 1, column" if kind != "transcript" else "invalid JSON at line 1"))


def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "chat.json"
    folder.mkdir()
    with pytest.raises(UsageError, match=rf"^cannot read {folder}: Is a directory$"):
        read_transcript(folder)
