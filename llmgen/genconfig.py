"""Generation-config files: transformers' own way to keep a decoding strategy, as llmgen presets.

A preset and a `generation_config.json` are two views of one thing. `read_settings` turns such a file into
the settings mapping a YAML preset's `generation:` holds, so that `presets.load` checks both with the same
code; `export` writes a preset's effective settings (after `extends`) as a file `GenerationConfig.from_pretrained`
loads; `import_file` makes a file a user preset. The preset name `model` stands for the model's own
generation_config alone. Nothing here imports torch or transformers at module level (`presets list` reads presets).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmgen.config import parse_json
from llmgen.errors import UsageError
from llmgen.files import write_atomic

if TYPE_CHECKING:
    from llmgen.presets import ResolvedPreset

MODEL = "model"
"""The preset name that runs the model's own generation_config.json alone, with no preset over it."""

FILE_NAME = "generation_config.json"
"""The name transformers looks for in a model directory: exporting there gives the model the strategy."""

FILE_ONLY_KEYS = ("transformers_version", "_from_model_config")
"""Keys transformers writes into every file about the file itself: no settings."""

PRESET_ONLY_KEYS = ("system", "quant", "assistant_model")
"""What a preset may hold beyond generation settings, which a generation config cannot."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_file_spec(spec: str) -> bool:
    """Whether a `--preset` value names a generation-config (JSON) file rather than a preset."""
    return spec.lower().endswith(".json")


def read_settings(path: Path) -> dict[str, Any]:
    """A generation-config file's settings, as a YAML preset's `generation:` holds them.

    Every error is one line naming the file (and the key, where one is at fault); keys and values are checked by
    `presets.load` as for a YAML preset.
    """
    if path.is_dir():
        raise UsageError(f"{path}: a directory, not a generation-config file", hint=f"give a file, e.g. {path / FILE_NAME}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    data = parse_json(text, str(path))
    if not isinstance(data, dict):
        kind = {list: "a JSON array", str: "a JSON string", type(None): "null", bool: "a boolean"}.get(
            type(data), "a number")
        raise UsageError(f"{path}: expected a JSON object of generation settings, got {kind}")
    for key in PRESET_ONLY_KEYS:
        if key in data:
            raise UsageError(f"{path}: '{key}' is a preset key, not a generation setting",
                             hint="import the file ('llmgen presets import') and set it in the preset's YAML")
    return {k: v for k, v in data.items() if k not in FILE_ONLY_KEYS}


def export_text(preset: ResolvedPreset) -> tuple[str, list[str]]:
    """The generation-config JSON of a preset's effective settings, and the preset keys it cannot hold.

    Every setting the preset gives is written, those equal to transformers' defaults included: over a model's own
    generation_config (`--preset FILE.json`), an explicit `do_sample: false` is what keeps the strategy greedy.
    Contrastive search, DoLa and diverse beam search are kept by their own settings (`penalty_alpha`, `dola_layers`,
    `num_beam_groups`...), which GenerationConfig still holds: llmgen runs them with its own loops, and transformers
    with the Hub loops it names for those modes.
    """
    import transformers

    data = {**preset.generation, "transformers_version": transformers.__version__}
    left_out = [key for key in PRESET_ONLY_KEYS if getattr(preset, key)]
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", left_out


def export(preset: ResolvedPreset, directory: Path, file_name: str = FILE_NAME) -> tuple[Path, list[str]]:
    """Write the preset as `directory/file_name` (the folder made if missing), whole or not at all.

    Returns the file's path and the preset keys left out.
    """
    if "/" in file_name or "\\" in file_name or not file_name.endswith(".json") or file_name.startswith("."):
        raise UsageError(f"--file-name: expected a file name ending in .json, got '{file_name}'")
    text, left_out = export_text(preset)
    target = directory / file_name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise UsageError(f"{target}: a directory; cannot write the generation config there")
        write_atomic(target, text)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target, left_out


def import_file(path: Path, name: str, description: str | None = None, force: bool = False) -> Path:
    """Make a generation-config file a user preset (YAML in the user presets folder), checked first as
    `--preset FILE.json` would check it. An existing preset of that name is replaced only with `force`."""
    import yaml

    from llmgen import presets

    if not is_file_spec(str(path)):
        raise UsageError(f"{path}: expected a generation-config file ending in .json")
    if not _NAME.fullmatch(name) or name == MODEL or name.endswith((".json", ".yaml", ".yml")):
        raise UsageError(f"--name: '{name}' cannot be a preset name",
                         hint=f"letters, digits, '-', '_' and '.', not ending in .json or .yaml, and not '{MODEL}'")
    preset = presets.load(str(path))
    existing = presets.discover().get(name)
    if existing is not None and not force:
        what = "a built-in preset" if existing.builtin else f"a user preset ({existing.path})"
        raise UsageError(f"'{name}' is already {what}",
                         hint="--force replaces it" + (" with a user preset that shadows it" if existing.builtin else ""))
    text = yaml.safe_dump(
        {"name": name, "description": description or f"Imported from {path.name}.", "generation": preset.generation},
        sort_keys=False, allow_unicode=True,
    )
    target = presets.user_dir() / f"{name}.yaml"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
