"""KV-cache choices (`--cache`, `cache:`/`cache_config:` in presets, `--compile`): refused when the plan is made, or
run by every strategy whose row says it can; the quantized cache on the built-in model against the dynamic one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from llmgen import caches, presets, strategies
from llmgen.chat import Conversation
from llmgen.engine import Request
from llmgen.errors import UsageError
from tests.conftest import run_in_process

TINY_QUANTIZED = {"cache_config": {"q_group_size": 16}}  # the tiny model's heads are 16 wide
STRATEGY_SETTINGS = {
    "greedy": {},
    "sampling": {"do_sample": True},
    "beam": {"num_beams": 3},
    "beam-sampling": {"num_beams": 3, "do_sample": True},
    "contrastive": {"penalty_alpha": 0.6, "top_k": 4},
    "dola": {"dola_layers": "high"},
    "diverse-beam": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "prompt-lookup": {"prompt_lookup_num_tokens": 3},
}
FIRST_TOKENS_AGREEING = 7  # of 64, greedy on the built-in model with the default quantized cache (HQQ 4-bit)


def assert_one_line_refusal(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert expected in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--cache", "foo"], "command line: unknown cache 'foo' (choose dynamic, static, quantized, offloaded)"),
        (["--set", "cache_implementation=paged"], "unknown cache 'paged'"),
        (["--cache", "quantized", "--set", "cache_config={nbit: 4}"], "unknown key 'nbit' (did you mean 'nbits'?)"),
        (["--cache", "quantized", "--set", "cache_config={nbits: 5}"], "nbits must be one of 1, 2, 3, 4, 8 (HQQ)"),
        (["--cache", "quantized", "--set", "cache_config={nbits: '4'}"], "nbits must be one of"),
        (["--cache", "quantized", "--set", "cache_config={nbits: true}"], "got True"),
        (["--cache", "quantized", "--set", "cache_config={q_group_size: 24}"], "q_group_size must be one of"),
        (["--cache", "quantized", "--set", "cache_config={residual_length: -1}"], "residual_length must be"),
        (["--cache", "quantized", "--set", "cache_config={backend: quanto}"], "backend 'quanto' is not supported"),
        (["--cache", "quantized", "--set", "cache_config={axis_value: 1}"], "axis_value 1 with nbits 4"),
        (["--cache", "quantized", "--set", "cache_config=[4]"], "cache_config must be a mapping"),
        (["--cache", "static", "-p", "contrastive"], "contrastive search cannot use the static cache"),
        (["--cache", "quantized", "-p", "prompt-lookup"], "prompt lookup decoding cannot use the quantized cache"),
        (["--compile", "--cache", "quantized"], "--compile compiles the decode step over the static cache"),
        (["--compile", "-p", "diverse-beam"], "diverse beam search does not run one"),
    ],
)
def test_a_bad_cache_choice_is_one_line_and_exit_2_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], expected: str
) -> None:
    monkeypatch.setattr("llmgen.models.load", lambda *a, **k: pytest.fail("the model loaded"))
    assert_one_line_refusal(run_in_process("run", "hi", "-n", "2", *flags), expected)


@pytest.mark.parametrize("command", [["chat"], ["compare", "hi"], ["batch", "-"]])
def test_every_generating_command_takes_the_flag(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setattr("llmgen.models.load", lambda *a, **k: pytest.fail("the model loaded"))
    assert_one_line_refusal(run_in_process(*command, "--cache", "quantised"), "unknown cache 'quantised'")


def test_without_the_kv_extra_the_quantized_cache_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hqq", None)  # as if it were not installed
    monkeypatch.setattr("llmgen.models.load", lambda *a, **k: pytest.fail("the model loaded"))
    proc = run_in_process("run", "hi", "-p", "long")
    assert_one_line_refusal(proc, "the quantized KV cache needs HQQ: pip install 'llmgen[kv]'")


def test_presets_carry_cache_and_cache_config_as_generation_settings(user_dirs) -> None:
    long = presets.load("long")
    assert long.generation["cache_implementation"] == "quantized"
    assert long.generation["cache_config"] == {"backend": "hqq", "nbits": 4}
    mine = presets.user_dir() / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("generation: {max_new_tokens: 8}\ncache: static\ncache_config: {nbits: 2}\n")
    plan = presets.load("mine")
    assert plan.generation["cache_implementation"] == "static"
    mine.write_text("cache: quantized\ncache_config: {nbits: 7}\n")
    with pytest.raises(UsageError, match="nbits must be one of"):
        presets.load("mine")
    mine.write_text("cache: static\ngeneration: {cache_implementation: dynamic}\n")
    with pytest.raises(UsageError, match=r"mine.yaml: 'cache' and 'generation.cache_implementation' both set"):
        presets.load("mine")


def test_the_quantized_cache_fills_in_its_defaults_and_others_drop_cache_config(tiny_engine) -> None:
    preset = presets.resolve("greedy")
    plan = tiny_engine.plan(preset, {"cache_implementation": "quantized", **TINY_QUANTIZED})
    assert plan.config.cache_config == {**caches.QUANTIZED_DEFAULTS, "q_group_size": 16}
    plan = tiny_engine.plan(preset, {"cache_implementation": "static", "cache_config": {"nbits": 2}})
    assert plan.config.cache_config is None
    assert any("cache_config` is ignored" in w for w in plan.warnings)
    with pytest.raises(UsageError, match=r"q_group_size 32 does not divide the model's head size \(16\)"):
        tiny_engine.plan(preset, {"cache_implementation": "quantized", "cache_config": {"q_group_size": 32}})


@pytest.mark.parametrize("name", list(STRATEGY_SETTINGS))
def test_each_strategy_runs_with_the_caches_its_row_names_and_refuses_the_others(tiny_engine, name: str) -> None:
    row = strategies.named(name)
    preset = presets.resolve("greedy")
    for cache in caches.CACHES:
        settings = {**STRATEGY_SETTINGS[name], "max_new_tokens": 6, "min_new_tokens": 6, "cache_implementation": cache}
        settings |= TINY_QUANTIZED if cache == "quantized" else {}
        if cache not in row.caches:
            with pytest.raises(UsageError, match=f"cannot use the {cache} cache"):
                tiny_engine.plan(preset, settings)
            continue
        plan = tiny_engine.plan(preset, settings, seed=0)
        assert plan.row is row
        result = tiny_engine.generate(Request(prompt="Tell me a story " * 4), plan)
        assert len(result.token_ids) == 6, (name, cache)
        if plan.batches:
            rows = tiny_engine.generate_batch([Request(prompt="Hi"), Request(prompt="Hello there " * 7)], plan)
            assert [len(r.token_ids) for r in rows] == [6, 6], (name, cache)


def test_offloaded_on_the_cpu_is_the_dynamic_cache_with_one_notice(tiny_engine, caplog) -> None:
    tiny_engine._noticed.clear()
    settings = {"cache_implementation": "offloaded", "max_new_tokens": 3}
    with caplog.at_level(logging.WARNING, logger="llmgen"):
        plan = tiny_engine.plan(presets.resolve("greedy"), settings)
        tiny_engine.plan(presets.resolve("greedy"), settings)
    assert plan.config.cache_implementation == "dynamic"
    assert [r.getMessage() for r in caplog.records] == [
        "the offloaded cache only helps with the model on a GPU (it is on cpu); using the dynamic cache"
    ]
    assert len(tiny_engine.generate(Request(prompt="Hi"), plan).token_ids) >= 1


@pytest.mark.parametrize(("cache", "reused"), [("dynamic", True), ("offloaded", True), ("static", False),
                                                 ("quantized", False)])
def test_chat_reuses_the_cache_across_turns_or_says_it_does_not(tiny_engine, caplog, cache: str, reused: bool) -> None:
    tiny_engine._noticed.clear()
    overrides = {"cache_implementation": cache, "max_new_tokens": 4, "min_new_tokens": 4}
    overrides |= TINY_QUANTIZED if cache == "quantized" else {}
    chat = Conversation(tiny_engine, presets.resolve("greedy"), overrides=overrides)
    with caplog.at_level(logging.WARNING, logger="llmgen"):
        chat.reply("Hello there")
        second = chat.reply("And then?")
        chat.reply("Once more")
    assert (second.result.extra["cached_tokens"] > 0) is reused
    notices = [r.getMessage() for r in caplog.records if "not carried across turns" in r.getMessage()]
    expected = f"the {cache} cache is not carried across turns: each reply encodes the whole conversation"
    assert notices == ([] if reused else [expected])


def test_compile_asks_transformers_to_compile_on_every_device_and_says_so_first(tiny_engine, caplog) -> None:
    from transformers import GenerationConfig

    plan = tiny_engine.plan(presets.resolve("greedy"), {"cache_implementation": "static", "disable_compile": False})
    assert caches.compiles(plan.config, "cpu")
    static = GenerationConfig(cache_implementation="static")
    assert caches.compiles(static, "cuda") and not caches.compiles(static, "cpu")  # the defaults
    assert not caches.compiles(GenerationConfig(cache_implementation="static", disable_compile=True), "cuda")
    tiny_engine._compiled_length = 0
    with caplog.at_level(logging.WARNING, logger="llmgen"):
        config = tiny_engine._compiling(plan.config, 10)
        tiny_engine._compiling(plan.config, 10)
    assert config.compile_config._compile_all_devices and plan.config.compile_config is None
    status = "compiling the decode step (torch.compile, static cache): generation pauses after the first token"
    assert [r.getMessage() for r in caplog.records] == [f"{status} while it compiles"]


@pytest.fixture(scope="module")
def greedy_64(builtin_engine) -> dict[str, list[int]]:
    """64 greedy tokens on the built-in model with the dynamic and the quantized cache (once for the module)."""
    request = Request(prompt="Write a short story about a lighthouse keeper who finds a message in a bottle.")
    out = {}
    for cache in ("dynamic", "quantized"):
        plan = builtin_engine.plan(presets.resolve("greedy"), {"max_new_tokens": 64, "min_new_tokens": 64,
                                                               "cache_implementation": cache})
        out[cache] = builtin_engine.generate(request, plan).token_ids
    return out


def test_the_quantized_cache_agrees_with_the_dynamic_one_on_the_first_tokens(greedy_64) -> None:
    dynamic, quantized = greedy_64["dynamic"], greedy_64["quantized"]
    assert len(dynamic) == len(quantized) == 64
    agreeing = next((i for i, (a, b) in enumerate(zip(dynamic, quantized)) if a != b), 64)
    assert FIRST_TOKENS_AGREEING <= agreeing < 64  # 4-bit keys and values: close, not identical


def test_the_long_preset_runs_from_the_command_line(cli) -> None:
    proc = cli("run", "Tell me about the sea.", "-p", "long", "-n", "4", "--seed", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["preset"] == "long" and obj["usage"]["completion_tokens"] == 4
    assert obj["generation"]["cache_implementation"] == "quantized"
    assert obj["generation"]["cache_config"] == caches.QUANTIZED_DEFAULTS


def test_compile_runs_the_static_cache_compiled_and_keeps_inductor_s_cache_under_llmgen_s(
    tiny_engine, tmp_path, monkeypatch, caplog
) -> None:
    """A real compile on a fresh tiny model (its own, so the shared one stays uncompiled): same tokens, status first."""
    from llmgen.engine import Engine

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored afterwards: the compile sets it
    model = type(tiny_engine.model)(tiny_engine.model.config).eval()
    model.load_state_dict(tiny_engine.model.state_dict())
    engine = Engine.from_model(model, tiny_engine.tokenizer, name="tiny-compiled")
    settings = {"max_new_tokens": 5, "min_new_tokens": 5, "cache_implementation": "static"}
    plain = engine.plan(presets.resolve("greedy"), settings)
    compiled = engine.plan(presets.resolve("greedy"), {**settings, "disable_compile": False})
    request = Request(prompt="Once upon a time")
    with caplog.at_level(logging.WARNING, logger="llmgen"):
        expected = engine.generate(request, plain).token_ids
        assert not caplog.records  # no compile on the CPU unless asked
        assert engine.generate(request, compiled).token_ids == expected
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "compiling the decode step (torch.compile, static cache)"
    ]
    assert any((tmp_path / "cache" / "llmgen" / "inductor").iterdir())
