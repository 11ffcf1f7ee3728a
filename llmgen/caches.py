"""KV-cache choices: `--cache dynamic|static|quantized|offloaded`, the quantized cache's settings, and `--compile`.

A choice is GenerationConfig's `cache_implementation` (and, for the quantized cache, `cache_config`), so presets,
`--set` and batch params carry it like any other setting. `check` refuses, when a plan is made and before any model
runs, what would fail mid-generation: an unknown choice, a `cache_config` the backend rejects, a strategy whose loop
cannot use the cache (its row's `caches` in `llmgen.strategies`), compiling without the static cache, the quantized
cache without its package. `for_model` then adapts a plan to the loaded model: the offloaded cache only means
something on a GPU, and the quantized cache's groups must divide the model's head size.

The quantized backend is HQQ (`pip install 'llmgen[kv]'`): pure PyTorch, so it runs on the CPU and on CUDA alike.
optimum-quanto, transformers' default, JIT-compiles a C++ extension on first use (minutes on a CPU), refuses group
sizes that do not divide the sequence length mid-generation, and has open bugs (transformers issue 40099).
Nothing here imports torch or transformers.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any, Protocol

from llmgen.errors import UsageError

if TYPE_CHECKING:
    from transformers import GenerationConfig

log = logging.getLogger(__name__)

CACHES = ("dynamic", "static", "quantized", "offloaded")
"""The cache choices llmgen runs (`--cache`), by GenerationConfig's `cache_implementation` names."""

KV_EXTRA = "pip install 'llmgen[kv]'"

QUANTIZED_DEFAULTS: dict[str, Any] = {
    "backend": "hqq",
    "nbits": 4,
    "axis_key": 0,
    "axis_value": 0,
    "q_group_size": 64,
    "residual_length": 128,
}
"""The quantized cache's settings unless `cache_config` says otherwise: transformers' own, with HQQ as the backend."""

HQQ_NBITS = (1, 2, 3, 4, 8)
HQQ_AXES = (0, 1)
# HQQ packs 1, 2 and 4-bit values along the rows of each quantized tensor; with axis 1 their number follows the
# sequence length, and an odd one fails mid-generation. Axis 0 makes them the group size: always a multiple of 8.
PACKED_NBITS = (1, 2, 4)
GROUP_SIZES = (8, 16, 32, 64, 128, 256)


class CacheUser(Protocol):
    """What `check` reads of a strategy's row (`llmgen.strategies.Strategy`): caches sit below strategies."""

    title: str
    caches: tuple[str, ...]
    loop: str | None
    batches: bool


def check_names(layers: list[tuple[str, dict[str, Any]]]) -> None:
    """Refuse a cache llmgen does not run, naming the settings layer (a preset, "command line") that asks for it.

    Only the layers a user writes: a model's own generation_config may name other caches (a sliding-window one),
    which transformers handles.
    """
    for source, layer in layers:
        name = layer.get("cache_implementation")
        if name is not None and name not in CACHES:
            raise UsageError(f"{source}: unknown cache {name!r} (choose {', '.join(CACHES)})")


def check(config: GenerationConfig, row: CacheUser) -> list[str]:
    """Refuse a cache choice this plan cannot run with; fill the quantized cache's settings in. Returns warnings."""
    name = config.cache_implementation
    warnings: list[str] = []
    if name == "quantized":
        config.cache_config = quantized_settings(config.cache_config)
        if importlib.util.find_spec("hqq") is None:
            raise UsageError(f"the quantized KV cache needs HQQ: {KV_EXTRA}")
    elif config.cache_config is not None:
        warnings.append("`cache_config` is ignored: only the quantized cache (--cache quantized) uses it")
        config.cache_config = None
    if name in CACHES and name not in row.caches:
        raise UsageError(f"{row.title} cannot use the {name} cache (it runs with: {', '.join(row.caches)})")
    if config.disable_compile is False:
        if name != "static":
            raise UsageError(f"--compile compiles the decode step over the static cache; not with the {name or 'dynamic'} "
                             "cache")
        if row.loop is not None or not row.batches:
            raise UsageError(f"--compile compiles transformers' own decoding loops; {row.title} does not run one")
    return warnings


def quantized_settings(given: Any) -> dict[str, Any]:
    """The quantized cache's `cache_config`: llmgen's defaults under what is given, each value checked."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise UsageError(f"cache_config must be a mapping of quantized-cache settings, got {type(given).__name__}")
    for key in given:
        if key not in QUANTIZED_DEFAULTS:
            close = difflib.get_close_matches(str(key), QUANTIZED_DEFAULTS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(QUANTIZED_DEFAULTS)})"
            raise UsageError(f"cache_config: unknown key '{key}'{hint}")
    settings = {**QUANTIZED_DEFAULTS, **given}
    backend = settings["backend"]
    if backend != "hqq":
        why = {"quanto": "it fails on some prompt lengths and compiles a C++ extension on first use",
               "fp8": "its scale is fixed by the prompt, so later values can overflow"}.get(str(backend), "unknown")
        raise UsageError(f"cache_config: backend '{backend}' is not supported ({why}); llmgen uses 'hqq'")
    allowed = {"nbits": HQQ_NBITS, "axis_key": HQQ_AXES, "axis_value": HQQ_AXES, "q_group_size": GROUP_SIZES}
    for key, values in allowed.items():
        value = settings[key]
        if type(value) is not int or value not in values:
            choices = ", ".join(map(str, values))
            raise UsageError(f"cache_config: {key} must be one of {choices} (HQQ), got {value!r}")
    residual = settings["residual_length"]
    if type(residual) is not int or residual < 0:
        raise UsageError(f"cache_config: residual_length must be an integer >= 0, got {residual!r}")
    for axis in ("axis_key", "axis_value"):
        if settings[axis] == 1 and settings["nbits"] in PACKED_NBITS:
            raise UsageError(f"cache_config: {axis} 1 with nbits {settings['nbits']} fails on odd sequence lengths "
                             "(HQQ packs along the rows); use axis 0, or nbits 3 or 8")
    return settings


def for_model(config: GenerationConfig, model: Any) -> tuple[GenerationConfig, str | None]:
    """The config as it runs on this loaded model, and a notice when a choice could not apply as asked.

    The offloaded cache keeps keys and values in CPU memory while the model computes on a GPU: with the model on
    the CPU it is the dynamic cache. The quantized cache's groups must divide the model's head size, or a tensor of
    some length would not split into them mid-generation (a usage error).
    """
    import copy

    name = config.cache_implementation
    if name == "offloaded" and model.device.type not in ("cuda", "xpu"):
        config = copy.deepcopy(config)
        config.cache_implementation = "dynamic"
        return config, (f"the offloaded cache only helps with the model on a GPU (it is on {model.device.type}); "
                        "using the dynamic cache")
    if name == "quantized":
        text = model.config.get_text_config(decoder=True)
        head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        size = config.cache_config["q_group_size"]
        if head % size:
            raise UsageError(f"cache_config: q_group_size {size} does not divide the model's head size ({head})")
    return config, None


def compiles(config: GenerationConfig, device_type: str) -> bool:
    """Whether generate will compile the decode step: asked for (`--compile`), or transformers' own choice on CUDA.

    `disable_compile` is None unless set: then transformers compiles static caches on CUDA-like devices, and llmgen
    leaves the CPU alone (compiling did not pay there: see bench/bench_cache.py).
    """
    if config.cache_implementation != "static" or config.disable_compile:
        return False
    return config.disable_compile is False or device_type in ("cuda", "xpu")
