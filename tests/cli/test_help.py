"""A newcomer's first read: every command's help, `-h`, `--version` and preset-name completion."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmgen.cli import app
from llmgen.options import FROM_PRESET, ModelOptions, complete_preset, complete_preset_list
from tests.conftest import light_cli

WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}


def _commands() -> list[tuple[tuple[str, ...], typer.core.TyperCommand]]:
    """Every command and sub-command as (its path after `llmgen`, its click object), the app itself first."""
    found = []

    def walk(path: tuple[str, ...], command) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


COMMANDS = _commands()
PATHS = [" ".join(path) or "llmgen" for path, _ in COMMANDS]


def _help_of(path: tuple[str, ...], flag: str = "--help") -> str:
    """The rendered help, in process (the real command is driven by the `-h` and completion tests)."""
    result = CliRunner().invoke(app, [*path, flag], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked() -> None:
    assert {"run", "chat", "batch", "compare", "info", "presets list", "presets show"} <= set(PATHS)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=PATHS)
def test_every_option_has_a_description_and_a_readable_metavar(path, command) -> None:
    ctx = typer.Context(command, info_name="llmgen")
    params = command.get_params(ctx)
    undescribed = [p.name for p in params if not (p.help or "").strip()]
    assert undescribed == []
    rendered = _help_of(path)
    assert rendered == _help_of(path, "-h")
    for param in params:
        if param.param_type_name == "option":
            long = re.escape(max(param.opts, key=len))
            row = next(line for line in rendered.splitlines() if re.match(rf"\W*{long}\s", line))
            assert param.help.split()[0] in row, row
    assert re.search(r"<\w+(\[\w+\])?>|<[\w|]+>", rendered) is None, rendered


def test_generation_flags_say_their_default_comes_from_the_preset() -> None:
    run = typer.main.get_command(app).commands["run"]
    by_name = {p.name: p for p in run.params}
    for name in ("max_new_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "num_beams",
                 "num_return_sequences", "stop", "system"):
        assert by_name[name].show_default == FROM_PRESET, name
    rendered = _help_of(("run",))
    row = next(line for line in rendered.splitlines() if "--max-new-tokens" in line)
    assert re.search(r"-n\s+N\s", row) and FROM_PRESET in row, row
    assert re.search(r"--stop\s+TEXT\s", rendered) and re.search(r"--top-p\s+P\s", rendered)
    assert re.search(r"--seed\s+N\s", rendered)
    assert "[default: (auto, or config.yaml / $LLMGEN_QUANT)]" in rendered


@pytest.mark.parametrize("path", [(), ("presets", "show")], ids=["llmgen", "presets show"])
def test_dash_h_is_help_on_the_installed_command(cli, path) -> None:
    short, long = (cli(*path, flag, env=WIDE) for flag in ("-h", "--help"))
    assert short.returncode == 0 and short.stderr == "" and "Usage: llmgen" in short.stdout
    assert short.stdout == long.stdout


def test_version_prints_the_package_version(cli) -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"llmgen {importlib.metadata.version('llmgen')}\n"


def test_version_and_completion_import_neither_torch_nor_transformers() -> None:
    out, heavy = light_cli(["--version"], after="from llmgen.options import complete_preset; complete_preset('')")
    assert out.startswith("llmgen ") and heavy == []


def test_info_takes_the_same_model_flags_as_run(cli) -> None:
    commands = typer.main.get_command(app).commands
    names = [f.name for f in dataclasses.fields(ModelOptions)]

    def flags(command) -> dict:
        return {p.name: (p.opts, p.help, p.metavar, p.show_default) for p in command.params if p.name in names}

    assert flags(commands["info"]) == flags(commands["run"]) and len(flags(commands["info"])) == len(names)
    proc = cli("info", "--json", "--quant", "none", "--device", "cpu", "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["quant"], info["device"], info["dtype"]) == ("none", "cpu", "float32")


@pytest.fixture
def user_preset(user_dirs: Path) -> str:
    folder = user_dirs / "config" / "llmgen" / "presets"
    folder.mkdir(parents=True)
    (folder / "my-greedy.yaml").write_text("extends: greedy\n", encoding="utf-8")
    return "my-greedy"


def test_preset_completion_offers_builtin_and_user_names_by_prefix(user_preset) -> None:
    everything = dict(complete_preset(""))
    assert everything["greedy"] == "built-in" and everything[user_preset] == "user"
    assert [name for name, _ in complete_preset("gr")] == ["greedy"]
    assert [name for name, _ in complete_preset("my")] == [user_preset]
    assert complete_preset("nothing-like-this") == []
    assert complete_preset_list("greedy,be") == ["greedy,beam", "greedy,beam-sampling"]


@pytest.mark.parametrize("words", ["llmgen run --preset my", "llmgen chat -p my", "llmgen presets show my"])
def test_shell_completes_preset_names(cli, user_preset, words) -> None:
    env = {"_LLMGEN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    proc = cli(env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [user_preset]


@pytest.mark.parametrize("path", [(), ("presets",)], ids=["llmgen", "llmgen presets"])
def test_a_group_given_no_command_shows_its_help_and_no_empty_error(cli, path) -> None:
    proc = cli(*path, env=WIDE)
    assert "Usage: llmgen" in proc.stdout
    assert "error" not in proc.stderr
