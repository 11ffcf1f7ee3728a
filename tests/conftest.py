"""Shared fixtures: an isolated user config, the built-in model, a tiny random model, the real CLI."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import traceback
import types
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LLMGEN = Path(sys.executable).with_name("llmgen")


@pytest.fixture(autouse=True)
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets empty config and state dirs; the model cache stays shared (it is only a cache)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in [k for k in os.environ if k.startswith("LLMGEN_")]:
        monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture(scope="session")
def builtin_engine():
    """The built-in SmolLM2-135M-Instruct, unquantized float32 on the CPU."""
    from llmgen.engine import Engine

    return Engine.load("builtin", quant="none", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_engine(builtin_engine):
    """A 2-layer random Llama with the built-in model's tokenizer and chat template: fast and real."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmgen.engine import Engine

    tokenizer = builtin_engine.tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return Engine.from_model(model, tokenizer, name="tiny-llama")


def run_cli(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `llmgen` command; stdout and stderr come back apart, as bytes decoded."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [str(LLMGEN), *args],
        input=data if data is not None else b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def run_in_process(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI's own entry point, `llmgen.cli.main`, in this process with its own argv, environment and
    standard streams, and return what `run_cli` returns. The same code runs as in the installed command,
    without paying Python's and torch's start-up (7 s) on every call; `timeout` is accepted and ignored.
    What needs a real process (signals, terminals, start-up imports, two processes) uses `run_cli`."""
    from llmgen import cli as cli_module

    data = input.encode() if isinstance(input, str) else (input or b"")
    # the standard streams of a `llmgen` started in this locale (C.UTF-8): UTF-8 with surrogateescape
    streams = {name: io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape", newline="")
               for name in ("stdout", "stderr")}
    saved = {name: getattr(sys, name) for name in ("stdin", "stdout", "stderr", "argv")}
    main_module = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")  # else click names the program `python -m pytest`
    saved_env = dict(os.environ)
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    os.environ.update(env or {})
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
    sys.stdout, sys.stderr = streams["stdout"], streams["stderr"]
    sys.argv = ["llmgen", *args]
    try:
        cli_module.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - what a real process would die of: a traceback and exit 1
        traceback.print_exc()
        code = 1
    finally:
        for name, value in saved.items():
            setattr(sys, name, value)
        sys.modules["__main__"] = main_module
        os.environ.clear()
        os.environ.update(saved_env)
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)
    texts = {}
    for name, stream in streams.items():
        stream.flush()
        texts[name] = stream.buffer.getvalue().decode("utf-8", "replace")
    return subprocess.CompletedProcess(["llmgen", *args], code, texts["stdout"], texts["stderr"])


@pytest.fixture
def cli():
    """The CLI run in this process (see `run_in_process`); `run_cli` starts the installed command instead."""
    return run_in_process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that drive the whole CLI (the `cli` fixture) are end-to-end: `-m "not integration"` skips them."""
    for item in items:
        if "cli" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def light_cli(*argvs: list[str], after: str = "") -> tuple[str, list[str]]:
    """Run the CLI app in a fresh interpreter for each argv in turn (then the `after` code): its stdout, and
    which of torch and transformers got imported (the start-up path must import neither)."""
    code = (
        "import sys\n"
        "from llmgen.cli import app\n"
        f"for argv in {list(argvs)!r}:\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"{after}\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    text, _, heavy = out.rpartition("HEAVY ")
    return text, ast.literal_eval(heavy)
