"""`presets export` and `presets import`: a preset written as a transformers generation-config file, and such a
file made a user preset. Both go through `presets.load`, so what is written or imported is checked as
`--preset` would check it; files are written whole or not at all (`files.write_atomic`).
"""

from __future__ import annotations

import re
from pathlib import Path

from llmgen import genconfig, presets
from llmgen.errors import UsageError
from llmgen.files import write_atomic
from llmgen.genconfig import FILE_NAME, MODEL
from llmgen.presets import ResolvedPreset

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def export(preset: ResolvedPreset, directory: Path, file_name: str = FILE_NAME) -> tuple[Path, list[str]]:
    """Write the preset as `directory/file_name` (the folder made if missing), whole or not at all.

    Returns the file's path and the preset keys left out.
    """
    if "/" in file_name or "\\" in file_name or not file_name.endswith(".json") or file_name.startswith("."):
        raise UsageError(f"--file-name: expected a file name ending in .json, got '{file_name}'")
    if preset.chain[0].model_own:
        raise UsageError(f"'{MODEL}' has no settings of its own to export: it is the model's {FILE_NAME}",
                         hint="copy that file, or export a preset")
    text = genconfig.export_text(preset.generation)
    left_out = [key for key in genconfig.PRESET_ONLY_KEYS if getattr(preset, key)]
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

    if not genconfig.is_file_spec(str(path)):
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
