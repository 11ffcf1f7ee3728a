"""The installed `llmgen` command end to end on the built-in model: stdout, stderr and exit codes apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import light_cli

QUESTION = "What is the capital of France?"


def test_help_and_presets_list_import_neither_torch_nor_transformers() -> None:
    out, heavy = light_cli(["--help"], ["presets", "list"])
    assert "greedy" in out and heavy == []


def test_run_streams_only_the_answer_to_stdout(cli) -> None:
    proc = cli("run", QUESTION, "-n", "12", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "The capital of France is Paris."
    assert "new tokens" in proc.stderr and "tokens/s" in proc.stderr and "finish: eos" in proc.stderr


def test_stdin_prompt_and_raw_completion(cli, tmp_path: Path) -> None:
    piped = cli("run", "--raw", "-n", "5", input="2+2=\n")
    assert piped.returncode == 0 and piped.stdout and piped.stderr == ""
    dash = cli("run", "-", "--raw", "-n", "5", input="2+2=")
    assert dash.stdout == piped.stdout


def test_json_object_has_every_field(cli) -> None:
    proc = cli("run", QUESTION, "--json", "-n", "4")
    obj = json.loads(proc.stdout)
    assert set(obj) >= {"text", "token_ids", "finish_reason", "preset", "model", "load", "generation", "usage",
                        "timings"}
    assert obj["finish_reason"] == "length" and len(obj["token_ids"]) == 4 == obj["usage"]["completion_tokens"]
    assert obj["text"] == "The capital of France"
    assert set(obj["load"]) == {"device", "dtype", "quant", "quant_reason"} and obj["load"]["quant"] == "none"
    assert obj["generation"]["max_new_tokens"] == 4 and obj["preset"] == "greedy"
    assert set(obj["timings"]) == {"load_s", "ttft_s", "total_s", "tokens_per_s"}


def test_seed_repeats_sampling_and_stop_cuts_the_text(cli) -> None:
    args = ("run", "Tell me a story.", "--preset", "creative", "-n", "12", "--seed", "11", "--json")
    first, second = (json.loads(cli(*args).stdout) for _ in range(2))
    assert first["token_ids"] == second["token_ids"]
    stopped = json.loads(cli("run", QUESTION, "--stop", "Paris", "--json").stdout)
    assert stopped["text"] == "The capital of France is " and stopped["finish_reason"] == "stop"


def test_beams_print_every_returned_sequence_with_its_score(cli) -> None:
    proc = cli("run", QUESTION, "--num-beams", "3", "--num-return-sequences", "3", "-n", "8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" score -") == 3 and proc.stdout.startswith("[1] score")


def test_config_file_and_environment_set_defaults(cli, user_dirs: Path) -> None:
    (user_dirs / "config" / "llmgen").mkdir(parents=True)
    (user_dirs / "config" / "llmgen" / "config.yaml").write_text("preset: precise\n")
    assert json.loads(cli("run", QUESTION, "--json", "-n", "2").stdout)["preset"] == "precise"
    env = {"LLMGEN_PRESET": "beam"}
    assert json.loads(cli("run", QUESTION, "--json", "-n", "2", env=env).stdout)["preset"] == "beam"
    flag = cli("run", QUESTION, "--json", "-n", "2", "-p", "greedy", env=env)
    assert json.loads(flag.stdout)["preset"] == "greedy"


def test_presets_list_and_show(cli, user_dirs: Path) -> None:
    user = user_dirs / "config" / "llmgen" / "presets"
    user.mkdir(parents=True)
    (user / "beam.yaml").write_text("description: my beams\nextends: beam\ngeneration:\n  num_beams: 8\n")
    listing = cli("presets", "list")
    assert listing.returncode == 0
    assert "user, shadows built-in" in listing.stdout and "contrastive" not in listing.stderr
    shown = cli("presets", "show", "creative")
    assert "strategy: sampling" in shown.stdout and "creative -> sampling" in shown.stdout
    assert "temperature: 0.9" in shown.stdout


def test_info_describes_the_builtin_model(cli) -> None:
    info = json.loads(cli("info", "--json").stdout)
    assert info["source"] == "builtin" and info["architecture"] == "LlamaForCausalLM"
    assert info["chat_template"] is True and info["context_length"] == 8192 and info["quant"] == "none"
    assert 130e6 < info["parameters"] < 140e6
    assert info["generation_config"]["eos_token_id"] == 2  # what the model's own generation_config sets


def bad_preset(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["run", "hi", "-p", "greddy"], None, "unknown preset 'greddy'"),
        (["run", "hi", "-p", "{yaml_error}"], None, "bad.yaml: line 4, column 1: invalid YAML"),
        (["run", "hi", "-p", "{unknown_key}"], None, "did you mean 'temperature'"),
        (["run", "hi", "-p", "{bad_value}"], None, "temperature"),
        (["run", "hi", "--set", "top_p"], None, "--set expects KEY=VALUE"),
        (["run", "hi", "--set", "top_pp=0.5"], None, "did you mean 'top_p'"),
        (["run", "hi", "--top-p", "2"], None, "top_p"),
        (["run", "hi", "--num-beams", "0"], None, "num_beams"),
        (["run", "hi", "-m", "./nowhere"], None, "model path does not exist"),
        (["run", "hi", "-m", "{tmp}"], None, "not a model directory"),
        (["run", "hi", "-m", "someone/uncached-model"], None, "not in the local Hugging Face cache"),
        (["run", ""], None, "empty"),
        (["run"], b"\xff\xfe bad", "not valid UTF-8"),
        (["run", "word " * 9000], None, "longer than the model's context"),
        (["run", "hi", "--bogus"], None, "No such option"),
        (["run", "hi", "--quant", "3bit"], None, "3bit"),
        (["run", "hi", "--seed", "-1"], None, "'--seed'"),
        (["run", "hi", "--set", "constraint=5"], None, "constraint: expected a mapping"),  # found by the fuzzer
        (["chat", "-p", "a\x1cb"], None, "unknown preset 'a\\x1cb'"),  # a control character stays one line
        (["run", "hi", "--seed", str(2**32)], None, "'--seed'"),
        (["run", "hi", "--threads", "0"], None, "'--threads'"),
        (["run", "hi", "--device", "cuda"], None, "no CUDA device is available"),
        (["run", "hi", "--device", "mps"], None, "no Apple GPU"),
        (["run", "hi", "--device", "cuda:x"], None, "--device cuda:x: expected auto, cpu, mps or cuda[:N]"),
        (["compare", "hi", "--presets", ""], None, "--presets is empty"),
        (["compare", "hi", "--presets", ","], None, "--presets is empty"),
        (["batch", "{tmp}"], None, "the input is a directory"),
        (["batch", "{file}", "-o", "{tmp}"], None, "the output is a directory"),
        (["batch", "{file}", "-o", "{file}/out.jsonl"], None, "no such directory for the output"),
        (["batch", "{file}", "-o", "{file}"], None, "the output file is the input file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path: Path, args: list[str], stdin, message: str) -> None:
    files = {
        "{yaml_error}": "name: x\ngeneration:\n  top_k: [1\n",
        "{unknown_key}": "generation:\n  temprature: 0.5\n",
        "{bad_value}": "generation:\n  do_sample: true\n  temperature: -1\n",
    }
    record = tmp_path / "in.jsonl"
    record.write_text('{"prompt": "hi"}\n')
    args = [bad_preset(tmp_path, files[a]) if a in files else str(tmp_path) if a == "{tmp}" else a for a in args]
    args = [a.replace("{file}", str(record)) for a in args]
    proc = cli(*args, input=stdin)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 2


def test_threads_from_the_flag_or_the_environment_and_openmp_threads_sleep_when_idle(cli) -> None:
    assert cli("run", "hi", "-n", "1", "--threads", "1").stdout
    assert cli("run", "hi", "-n", "1", env={"LLMGEN_THREADS": "1"}).stdout
    bad = cli("run", "hi", "-n", "1", env={"LLMGEN_THREADS": "two"})
    assert bad.returncode == 2 and bad.stderr.startswith("error: $LLMGEN_THREADS: threads:")
    policy = subprocess.run([sys.executable, "-c", "import os, llmgen; print(os.environ['OMP_WAIT_POLICY'])"],
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                 if k != "OMP_WAIT_POLICY"}, check=True)
    assert policy.stdout == "PASSIVE\n"  # two llmgen processes on the same cores (bench/bench_threads.py)


def test_extends_cycle_exits_2(cli, user_dirs: Path) -> None:
    user = user_dirs / "config" / "llmgen" / "presets"
    user.mkdir(parents=True)
    (user / "a.yaml").write_text("extends: b\n")
    (user / "b.yaml").write_text("extends: a\n")
    proc = cli("run", "hi", "-p", "a")
    assert proc.returncode == 2 and "cycle" in proc.stderr


def test_ctrl_c_keeps_what_was_streamed_and_exits_130() -> None:
    import signal

    from tests.conftest import LLMGEN

    proc = subprocess.Popen([str(LLMGEN), "run", "Write a long story about a dragon.", "-n", "400", "--stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    first = proc.stdout.read(20)  # streaming has begun
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert len(first + rest) >= 20 and b"Traceback" not in err
    assert b"finish: interrupted" in err
