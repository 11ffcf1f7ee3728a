"""Generation-config files: transformers' own way to keep a decoding strategy, the format llmgen reads and writes.

A preset and a `generation_config.json` are two views of one thing. `read_settings` turns such a file into
the settings mapping a YAML preset's `generation:` holds, so that `presets.load` checks both with the same
code; `export_text` is a preset's effective settings (after `extends`) as a file `GenerationConfig.from_pretrained`
loads (`llmgen.preset_files` writes it, and imports files as presets). The preset name `model` stands for the
model's own generation_config alone. Nothing here imports torch or transformers at module level (`presets list`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmgen.config import parse_json
from llmgen.errors import UsageError

MODEL = "model"
"""The preset name that runs the model's own generation_config.json alone, with no preset over it."""

FILE_NAME = "generation_config.json"
"""The name transformers looks for in a model directory: exporting there gives the model the strategy."""

FILE_ONLY_KEYS = ("transformers_version", "_from_model_config")
"""Keys transformers writes into every file about the file itself: no settings."""

PRESET_ONLY_KEYS = ("system", "quant", "assistant_model")
"""What a preset may hold beyond generation settings, which a generation config cannot."""


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


def export_text(generation: dict[str, Any]) -> str:
    """The generation-config JSON of a preset's effective settings.

    Every setting the preset gives is written, those equal to transformers' defaults included: over a model's own
    generation_config (`--preset FILE.json`), an explicit `do_sample: false` is what keeps the strategy greedy.
    Contrastive search, DoLa and diverse beam search are kept by their own settings (`penalty_alpha`, `dola_layers`,
    `num_beam_groups`...), which GenerationConfig still holds: llmgen runs them with its own loops, and transformers
    with the Hub loops it names for those modes.
    """
    import transformers

    data = {**generation, "transformers_version": transformers.__version__}
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
