"""Preset files: built-ins, user presets, extends chains and the errors bad files get."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmgen import presets
from llmgen.errors import UsageError
from llmgen.settings import check

REQUIRED = {"greedy", "beam", "sampling", "creative", "precise", "chat", "beam-sampling", "prompt-lookup"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_builtin_presets_exist_with_descriptions_and_valid_settings() -> None:
    found = presets.discover()
    assert REQUIRED <= set(found)
    for name in found:
        preset = presets.resolve(name)
        assert len(preset.description) > 30, name
        assert preset.generation.get("max_new_tokens"), f"{name} would stop at transformers' 20 tokens"
        check(preset.generation, name)


def test_builtin_presets_ship_inside_the_wheel(tmp_path: Path) -> None:
    """Build the wheel a user installs and look inside: every preset of the repo's presets/ is there."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("llmgen-*.whl")
    shipped = {Path(name).name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("llmgen/presets/")}
    in_repo = {path.name for path in (root / "presets").glob("*.yaml")}
    assert in_repo and {"greedy.yaml", "contrastive.yaml", "dola.yaml"} <= in_repo
    assert shipped == in_repo


def test_extends_merges_parents_first() -> None:
    creative = presets.resolve("creative")
    assert [f.name for f in creative.chain] == ["creative", "sampling"]
    assert creative.generation["do_sample"] is True  # from sampling
    assert creative.generation["temperature"] == 0.9  # creative's own
    assert creative.strategy == "sampling"


def test_user_preset_shadows_builtin_and_can_extend_it(user_dirs: Path) -> None:
    write(presets.user_dir() / "greedy.yaml", "extends: greedy\ngeneration:\n  max_new_tokens: 7\n")
    found = presets.discover()["greedy"]
    assert not found.builtin and found.shadows_builtin
    resolved = presets.resolve("greedy")
    assert resolved.generation["max_new_tokens"] == 7
    assert resolved.generation["do_sample"] is False
    assert resolved.chain[1].builtin


def test_preset_by_path(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.yaml", "extends: beam\ngeneration:\n  num_beams: 6\n")
    resolved = presets.resolve(str(path))
    assert resolved.name == "mine" and resolved.generation["num_beams"] == 6 and resolved.strategy == "beam"


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(UsageError, match="unknown preset 'greddy'") as err:
        presets.resolve("greddy")
    assert "greedy" in err.value.hint


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "name: bad\ngeneration:\n  top_k: [1, 2\n  top_p: 0.5\n")
    with pytest.raises(UsageError, match=r"bad\.yaml: line \d+, column \d+: invalid YAML"):
        presets.resolve(str(path))


def test_unknown_top_level_key_suggests_nearest(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.yaml", "descripton: oops\ngeneration: {}\n")
    with pytest.raises(UsageError, match=r"typo\.yaml: unknown key 'descripton' \(did you mean 'description'\?\)"):
        presets.resolve(str(path))


def test_extends_cycle_is_refused(user_dirs: Path) -> None:
    write(presets.user_dir() / "a.yaml", "extends: b\n")
    write(presets.user_dir() / "b.yaml", "extends: a\n")
    with pytest.raises(UsageError, match="'extends' cycle: a -> b -> a"):
        presets.resolve("a")


def test_extends_unknown_parent_names_the_file(user_dirs: Path) -> None:
    write(presets.user_dir() / "orphan.yaml", "extends: nothing-like-it\n")
    with pytest.raises(UsageError, match=r"orphan\.yaml: extends unknown preset"):
        presets.resolve("orphan")


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    value = "[1, 2]"
    for name in "abcdefghi":
        value = f"[&{name} {value}" + f", *{name}" * 9 + "]"
    path = write(tmp_path / "bomb.yaml", f"generation:\n  bad_words_ids: {value}\n")
    started = time.monotonic()
    with pytest.raises(UsageError, match=r"bomb\.yaml: line 2, column 19: invalid YAML: anchors and aliases"):
        presets.read(path)
    assert time.monotonic() - started < 1


def test_merge_keys_are_refused_as_aliases(tmp_path: Path) -> None:
    path = write(tmp_path / "merge.yaml", "base: &b {top_k: 5}\ngeneration:\n  <<: *b\n")
    with pytest.raises(UsageError, match=r"merge\.yaml: line 1, column 7: invalid YAML: anchors and aliases"):
        presets.read(path)


def test_deeply_nested_yaml_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path / "deep.yaml", "generation:\n  bad_words_ids: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UsageError, match=r"deep\.yaml: line 2, column \d+: invalid YAML: nested more than 32"):
        presets.read(path)


def test_binary_preset_is_refused_as_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"generation:\n  top_k: \xff\xfe\n")
    with pytest.raises(UsageError, match=r"binary\.yaml: not UTF-8 text \(byte 21\)"):
        presets.read(path)


def test_control_character_is_one_line_with_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "nul.yaml", "name: x\ngeneration: {top_k: \x01}\n")
    with pytest.raises(UsageError) as err:
        presets.read(path)
    assert str(err.value) == f"{path}: line 2, column 21: invalid YAML: unacceptable character #x0001: " \
                             "special characters are not allowed"


@pytest.mark.parametrize(
    ("generation", "message"),
    [
        ("max_new_tokens: abc", 'max_new_tokens must be an integer, got the string "abc"'),
        ("top_p: 7", "top_p: Input should be less than or equal to 1"),
        ('stop_strings: [""]', "stop_strings: an empty stop string"),
    ],
)
def test_reading_a_preset_checks_value_types_and_ranges(tmp_path: Path, generation: str, message: str) -> None:
    path = write(tmp_path / "p.yaml", f"generation:\n  {generation}\n")
    with pytest.raises(UsageError) as err:
        presets.read(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_load_checks_each_file_of_the_chain_naming_the_one_at_fault(user_dirs: Path) -> None:
    parent = write(presets.user_dir() / "parent.yaml", "extends: greedy\ngeneration:\n  temprature: 0.5\n")
    write(presets.user_dir() / "child.yaml", "extends: parent\ngeneration:\n  max_new_tokens: 5\n")
    assert presets.resolve("child").generation["temprature"] == 0.5  # the light path knows no transformers keys
    with pytest.raises(UsageError) as err:
        presets.load("child")
    assert str(err.value) == f"{parent}: unknown generation setting 'temprature' (did you mean 'temperature'?)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extends: beam\ngeneration:\n  num_beams: 2\n  num_return_sequences: 3\n", "{path}: .*num_return_sequences"),
        ("extends: dola\ngeneration:\n  dola_layers: middle\n", "^dola_layers must be 'low', 'high' or a list"),
        ("extends: greedy\ngeneration:\n  force_words_ids: [[5]]\n  num_beams: 2\n", "^llmgen does not run"),
        ("extends: beam\nassistant_model: builtin\n", "^preset p: assisted decoding works with greedy or sampling"),
    ],
)
def test_load_refuses_what_the_plan_would_refuse_without_a_model(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "p.yaml", text)
    presets.resolve(str(path))  # well-formed: only the plan it amounts to is refused
    with pytest.raises(UsageError, match=message.replace("{path}", str(path))):
        presets.load(str(path))
