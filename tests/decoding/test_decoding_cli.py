"""The decoding loops from the command line: presets, --set, stop strings, bad layers; nothing from the Hub."""

from __future__ import annotations

import json

import pytest

QUESTION = "What is the capital of France?"


@pytest.mark.parametrize(
    ("args", "strategy"),
    [
        (["-p", "contrastive"], "contrastive"),
        (["-p", "dola"], "dola"),
        (["--set", "penalty_alpha=0.4", "--set", "top_k=6"], "contrastive"),
        (["--set", "dola_layers=[8,16]"], "dola"),
        (["-p", "diverse-beam"], "diverse-beam"),
    ],
)
def test_strategies_run_from_presets_and_flags(cli, args: list[str], strategy: str) -> None:
    proc = cli("run", QUESTION, *args, "-n", "6", "--json", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["strategy"] == strategy and obj["usage"]["completion_tokens"] >= 1
    assert "warning" not in proc.stderr


def test_stop_strings_work_with_llmgen_loops(cli) -> None:
    proc = cli("run", QUESTION, "-p", "contrastive", "-n", "40", "--stop", " ", "--json")
    obj = json.loads(proc.stdout)
    assert proc.returncode == 0 and obj["finish_reason"] == "stop" and " " not in obj["text"]


def test_dola_layer_out_of_range_is_a_usage_error(cli) -> None:
    proc = cli("run", QUESTION, "--set", "dola_layers=[40]", "-n", "4")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: dola_layers index 40 is out of range: the model has 30 layers")


@pytest.mark.parametrize("command", [["presets", "show", "{p}", "--explain"], ["presets", "show", "{p}"],
                                     ["run", QUESTION, "-p", "{p}"]], ids=["show --explain", "show", "run"])
def test_dola_layers_the_loop_refuses_are_exit_2_and_one_line_before_any_model(cli, tmp_path, command) -> None:
    preset = tmp_path / "middle.yaml"
    preset.write_text("extends: dola\ngeneration:\n  dola_layers: middle\n")
    proc = cli(*[str(preset) if arg == "{p}" else arg for arg in command])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: dola_layers must be 'low', 'high' or a list of layer indices, not 'middle'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "force_words_ids=[[5]]", "--num-beams", "2"], "error: llmgen does not run constrained beam search"),
        (["-p", "contrastive", "--set", "use_cache=false"], "error: contrastive search needs use_cache=true"),
    ],
)
def test_strategies_llmgen_cannot_run_are_usage_errors(cli, args: list[str], message: str) -> None:
    proc = cli("run", QUESTION, *args, "-n", "4")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1


def test_presets_show_names_the_strategy(cli) -> None:
    for name in ("contrastive", "dola", "diverse-beam"):
        assert f"strategy: {name}" in cli("presets", "show", name).stdout
