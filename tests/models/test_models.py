"""Model specs, the GGUF cache, quantization choices and bitsandbytes loading on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgen import gguf_cache, models
from llmgen.engine import Engine, Request
from llmgen.errors import UsageError


def test_builtin_resolves_to_the_packaged_gguf() -> None:
    source = models.resolve("builtin")
    assert source.kind == "builtin" and source.path.name == models.BUILTIN_FILE and source.path.is_file()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("./no/such/model", "model path does not exist"),
        ("missing.gguf", "model path does not exist"),
        ("nobody-has/this-model", "not in the local Hugging Face cache and the Hub is offline"),
    ],
)
def test_bad_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        models.resolve(spec)


def test_directory_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a model directory"):
        models.resolve(str(tmp_path))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UsageError, match="not a .gguf file"):
        models.resolve(str(tmp_path / "notes.txt"))


def test_gguf_is_converted_once_then_read_from_the_cache(builtin_engine) -> None:
    cached = models.gguf_cache(models.builtin_gguf())
    weights = cached / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert models.gguf_cache(models.builtin_gguf()) == cached
    assert weights.stat().st_mtime_ns == before
    assert (cached / "config.json").is_file() and (cached / "tokenizer.json").is_file()


def test_a_local_directory_loads(builtin_engine, tmp_path: Path) -> None:
    local = Engine.load(str(models.gguf_cache(models.builtin_gguf())), quant="none", device="cpu")
    assert local.info.source == "dir" and local.info.parameters == builtin_engine.info.parameters


@pytest.mark.parametrize(
    ("device", "weight_gib", "expected"),
    [("cuda", 0.1, "4bit"), ("cpu", 10_000, "4bit"), ("cpu", 0.5, "none")],
)
def test_auto_quant_follows_the_spec(device: str, weight_gib: float, expected: str) -> None:
    quant, why = models.pick_quant("auto", device, int(weight_gib * (1 << 30)))
    assert quant == expected and why.startswith("auto:")
    assert models.pick_quant("8bit", device, 1) == ("8bit", "requested")


@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_bitsandbytes_quantization_runs_on_the_cpu(builtin_engine, quant: str) -> None:
    from llmgen import presets

    engine = Engine.load("builtin", quant=quant, device="cpu")
    assert engine.info.quant == quant
    assert engine.info.memory_bytes < builtin_engine.info.memory_bytes / 2
    result = engine.generate(
        Request(prompt="What is the capital of France?"), engine.plan(presets.resolve("greedy"), {"max_new_tokens": 8})
    )
    assert "Paris" in result.text


def test_digest_memo_is_replaced_whole_through_write_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmgen import files

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    written: list[Path] = []

    def spy(path: Path, data: str | bytes) -> None:
        written.append(Path(path))
        files.write_atomic(path, data)

    monkeypatch.setattr(gguf_cache, "write_atomic", spy)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    digest = gguf_cache._file_digest(model)
    memo = tmp_path / "cache" / "llmgen" / "gguf" / "digests.json"
    assert written == [memo] and digest in memo.read_text()
    assert gguf_cache._known_digest(model) == digest and written == [memo]


def test_check_gguf_accepts_a_whole_file_and_names_text_and_truncated_ones(tmp_path: Path) -> None:
    from tests.models.tiny_gguf import write_tiny_gguf

    whole = write_tiny_gguf(tmp_path / "tiny.gguf")
    gguf_cache.check_gguf(whole)
    text = tmp_path / "text.gguf"
    text.write_text("hello")
    with pytest.raises(UsageError, match=f"^not a GGUF file: {text}$"):
        gguf_cache.check_gguf(text)
    for cut in (10, 4000, whole.stat().st_size - 1):
        short = tmp_path / f"short{cut}.gguf"
        short.write_bytes(whole.read_bytes()[:cut])
        with pytest.raises(UsageError, match=f"^model file is truncated or corrupt: {short}$"):
            gguf_cache.check_gguf(short)
