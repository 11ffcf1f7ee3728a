"""The GGUF cache: a GGUF file dequantized once into a safetensors model directory, keyed by its SHA-256.

The conversion reads the user's file alone (copied into a private staging folder), so nothing beside
it (a tokenizer_config.json, model code) is read or run and an entry depends on the GGUF's bytes
only. An entry counts once its manifest, written last, matches its files; conversions of one file
take turns on a lock, and the lock's holder removes what killed conversions left behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

from llmgen import locks
from llmgen.config import cache_dir
from llmgen.errors import LlmgenError, UsageError
from llmgen.files import write_atomic

CACHE_FORMAT = 1
MANIFEST = "llmgen-entry.json"
log = logging.getLogger(__name__)


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
    waiting = functools.partial(log.warning, "waiting for another llmgen process converting %s", gguf.name)
    with locks.locked(root / f"{digest}.lock", on_wait=waiting):
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
        with contextlib.suppress(locks.Busy), locks.locked(root / f"{match[1]}.lock", wait=False):
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
