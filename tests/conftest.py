"""Shared fixtures: an isolated user config, the built-in model, a tiny random model, the real CLI."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


@pytest.fixture
def cli():
    return run_cli


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run the installed command (the `cli` fixture) are end-to-end: `-m "not integration"` skips them."""
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
