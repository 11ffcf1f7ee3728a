"""The GGUF cache through the real CLI: no code runs unasked, entries depend on the file alone, kills and races.

Every test points XDG_CACHE_HOME at its own folder, so the shared cache is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from llmgen import gguf_cache
from tests.conftest import LLMGEN
from tests.models.tiny_gguf import write_tiny_gguf

CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nfrom transformers import {base} as {name}\n"


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_entry(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    """The tiny GGUF converted once by the real CLI: a complete cache folder to copy and break."""
    from tests.conftest import run_cli

    home = tmp_path_factory.mktemp("tiny-cache")
    proc = run_cli("run", "hi", "-m", str(tiny_gguf), "-n", "1", env={"XDG_CACHE_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    return home


def gguf_root(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"]) / "llmgen" / "gguf"


def entries(env: dict[str, str]) -> list[Path]:
    root = gguf_root(env)
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def code_that_marks(folder: Path, module: str, base: str, name: str) -> Path:
    """Write `module.py` into `folder`, which creates a marker file when imported; returns the marker."""
    marker = folder.parent / f"{folder.name}-{module}-RAN"
    (folder / f"{module}.py").write_text(CODE.format(marker=str(marker), base=base, name=name))
    return marker


@pytest.mark.integration
def test_gguf_beside_tokenizer_code_converts_without_running_it_nor_poisoning_the_cache(
    cli, tmp_path: Path, cache_env: dict[str, str], tiny_gguf: Path
) -> None:
    """The issue's attack on a small GGUF (the built-in one behaves alike, it is only 98 MB to convert)."""
    hostile, clean = tmp_path / "hostile", tmp_path / "clean"
    for folder in (hostile, clean):
        folder.mkdir()
        shutil.copyfile(tiny_gguf, folder / "model.gguf")
    marker = code_that_marks(hostile, "tokenization_evil", "PreTrainedTokenizerFast", "EvilTokenizer")
    (hostile / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}
        )
    )

    first = cli("run", "hi", "-m", str(hostile / "model.gguf"), "-n", "2", env=cache_env)
    assert first.returncode == 0, first.stderr
    assert "custom code" not in first.stdout and "[y/N]" not in first.stdout + first.stderr
    assert not marker.exists()
    (entry,) = entries(cache_env)
    assert not list(entry.glob("*.py")) and "auto_map" not in (entry / "tokenizer_config.json").read_text()

    # The same bytes from a clean folder read that entry, and it holds nothing of the hostile folder's.
    for extra in ([], ["--trust-remote-code"]):
        again = cli("run", "hi", "-m", str(clean / "model.gguf"), "-n", "2", "--json", *extra, env=cache_env)
        assert again.returncode == 0, again.stderr
        assert "converting" not in again.stderr and json.loads(again.stdout)["usage"]["completion_tokens"] >= 1
    assert not marker.exists()


@pytest.mark.parametrize("where", ["model", "assistant"])
def test_model_directory_with_its_own_code_is_refused_naming_the_flag(
    cli, tmp_path: Path, tiny_gguf: Path, tiny_entry: Path, where: str
) -> None:
    (entry,) = entries({"XDG_CACHE_HOME": str(tiny_entry)})
    folder = tmp_path / "custom"
    shutil.copytree(entry, folder)
    marker = code_that_marks(folder, "modeling_evil", "LlamaConfig", "EvilConfig")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "modeling_evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))

    args = ["-m", str(folder)] if where == "model" else ["-m", str(tiny_gguf), "--assistant", str(folder)]
    proc = cli("run", "hi", *args, "-n", "2", env={"XDG_CACHE_HOME": str(tiny_entry)})
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "ships its own code" in line and "--trust-remote-code" in line
    assert proc.stdout == "" and not marker.exists()


def _old_entry_with_tokenizer_code(entry: Path) -> Path:
    """An entry as an old llmgen left it after converting a GGUF beside hostile tokenizer code."""
    (entry / gguf_cache.MANIFEST).unlink(missing_ok=True)
    config = json.loads((entry / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    config["tokenizer_class"] = "EvilTokenizer"
    (entry / "tokenizer_config.json").write_text(json.dumps(config))
    return code_that_marks(entry, "tokenization_evil", "PreTrainedTokenizerFast", "EvilTokenizer")


def _garbled_weights(entry: Path) -> None:
    weights = entry / "model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)


@pytest.mark.parametrize(
    "damage",
    [_old_entry_with_tokenizer_code, _garbled_weights, lambda entry: (entry / "tokenizer.json").unlink()],
    ids=["old-entry-with-code", "garbled-weights", "tokenizer-missing"],
)
def test_cache_entry_that_is_incomplete_or_does_not_load_is_rebuilt_not_trusted(
    cli, tmp_path: Path, tiny_gguf: Path, tiny_entry: Path, damage
) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    shutil.copytree(tiny_entry, env["XDG_CACHE_HOME"])
    (entry,) = entries(env)
    marker = damage(entry)

    proc = cli("run", "hi", "-m", str(tiny_gguf), "-n", "2", "--trust-remote-code", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "converting" in proc.stderr
    assert entries(env) == [entry] and gguf_cache._entry_complete(entry)
    assert not list(entry.glob("*.py")) and (marker is None or not marker.exists())


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_a_file_that_is_not_a_whole_gguf_is_refused_and_caches_nothing(
    cli, tmp_path: Path, tiny_gguf: Path, cache_env: dict[str, str], kind: str
) -> None:
    bad = tmp_path / "x.gguf"
    if kind == "text":
        bad.write_text("just some text\n")
        message = f"not a GGUF file: {bad}"
    else:
        bad.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size - 1000])
        message = f"model file is truncated or corrupt: {bad}"
    proc = cli("run", "hi", "-m", str(bad), "-n", "2", env=cache_env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]
    cache = Path(cache_env["XDG_CACHE_HOME"])
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_killed_conversion_leaves_nothing_once_the_next_run_converts(
    cli, tiny_gguf: Path, cache_env: dict[str, str]
) -> None:
    root = gguf_root(cache_env)
    proc = subprocess.Popen(
        [str(LLMGEN), "run", "hi", "-m", str(tiny_gguf), "-n", "2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **cache_env},
    )
    deadline = time.monotonic() + 120
    while not (root.is_dir() and [p for p in root.glob("*.tmp[0-9]*") if p.is_dir()]):
        assert proc.poll() is None and time.monotonic() < deadline, "the conversion never started"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p for p in root.glob("*.tmp[0-9]*") if p.is_dir()], "killed too late: the conversion had finished"

    again = cli("run", "hi", "-m", str(tiny_gguf), "-n", "2", env=cache_env)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in root.iterdir()) == sorted([entries(cache_env)[0].name, "digests.json"])


def test_three_simultaneous_first_loads_all_succeed_and_convert_once(
    tiny_gguf: Path, cache_env: dict[str, str]
) -> None:
    procs = [
        subprocess.Popen(
            [str(LLMGEN), "run", "hi", "-m", str(tiny_gguf), "-n", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **cache_env},
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], [err for _, err in results]
    assert sum("converting tiny.gguf to safetensors" in err for _, err in results) == 1
    assert len(entries(cache_env)) == 1 and not list(gguf_root(cache_env).glob("*.tmp*"))


def test_conversion_with_stderr_piped_shows_the_note_but_no_progress_bar(
    cli, tiny_gguf: Path, cache_env: dict[str, str]
) -> None:
    proc = cli("run", "hi", "-m", str(tiny_gguf), "-n", "2", env=cache_env)
    assert proc.returncode == 0, proc.stderr
    assert "converting tiny.gguf" in proc.stderr
    assert "it/s" not in proc.stderr and "%|" not in proc.stderr
