"""Generation-config files and presets as two views of one thing: export, import, `--preset FILE.json`,
`--preset model`, and the one-line errors bad files get."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from llmgen import genconfig, plans, preset_files, presets, strategies
from llmgen.engine import Request
from llmgen.errors import UsageError
from llmgen.options import complete_preset

BUILTIN = sorted(path.stem for path in presets.builtin_dir().glob("*.yaml"))


def effective(preset: presets.ResolvedPreset) -> dict:
    return plans.plan(preset).config.to_dict()


@pytest.mark.parametrize("name", BUILTIN)
def test_export_load_with_transformers_import_gives_the_same_settings(name: str, tmp_path: Path) -> None:
    from transformers import GenerationConfig

    original = presets.load(name)
    path, left_out = preset_files.export(original, tmp_path, f"{name}.json")
    assert path == tmp_path / f"{name}.json" and left_out == []
    loaded = GenerationConfig.from_pretrained(tmp_path, f"{name}.json")
    assert {key: getattr(loaded, key) for key in original.generation} == original.generation
    # contrastive, DoLa, diverse beam: their settings stay GenerationConfig fields and select the same mode
    assert strategies.by_mode(loaded.get_generation_mode().value).mode == strategies.select(original.generation).mode

    target = preset_files.import_file(path, f"rt-{name}")
    imported = presets.load(f"rt-{name}")
    assert target == presets.user_dir() / f"rt-{name}.yaml"
    assert imported.generation == original.generation and imported.strategy == original.strategy
    assert effective(imported) == effective(original) == effective(presets.load(str(path)))

    loaded.save_pretrained(tmp_path / "by-transformers")  # a file transformers writes itself, defaults left out
    assert effective(presets.load(str(tmp_path / "by-transformers" / genconfig.FILE_NAME))) == effective(original)


# The quantized cache's HQQ groups (64 wide) do not divide the tiny model's 16-wide heads; tests/engine/test_caches.py
# runs that preset on the built-in model.
ON_TINY = [name for name in BUILTIN if presets.resolve(name).generation.get("cache_implementation") != "quantized"]


@pytest.mark.parametrize("name", ON_TINY)
def test_exported_file_in_model_generate_gives_llmgens_tokens(name: str, tiny_engine, tmp_path: Path) -> None:
    """transformers' generate with the loaded file (llmgen's own loop for the strategies transformers 5 has only as
    Hub code) produces what llmgen produces for the preset; sampling presets under the same seed."""
    import torch
    from transformers import GenerationConfig, set_seed

    engine = tiny_engine
    preset = presets.load(name)
    prompt = engine.encode(Request(prompt="Tell me about the sea."))
    ours = engine.generate(prompt, engine.plan(preset, {"max_new_tokens": 4}, seed=7))

    preset_files.export(preset, tmp_path)
    config = GenerationConfig.from_pretrained(tmp_path)
    config.max_new_tokens = 4
    extra = {}
    row = strategies.select(config.to_dict())
    if row.loop:
        module, function = row.loop.split(":")
        extra["custom_generate"] = getattr(importlib.import_module(module), function)
    ids = torch.tensor([prompt])
    set_seed(7)
    output = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                   return_dict_in_generate=True, **extra)
    theirs = [_until_eos(row, engine.tokenizer.eos_token_id) for row in output.sequences[:, ids.shape[1]:].tolist()]
    assert theirs == (ours.all_token_ids or [ours.token_ids])


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def test_model_preset_is_the_models_own_generation_config_alone(tiny_engine, monkeypatch) -> None:
    from transformers import GenerationConfig

    own = GenerationConfig(do_sample=True, temperature=0.5, top_k=7, max_new_tokens=9,
                           eos_token_id=tiny_engine.tokenizer.eos_token_id)
    monkeypatch.setattr(tiny_engine.model, "generation_config", own)
    plan = tiny_engine.plan(presets.load(genconfig.MODEL))
    assert (plan.strategy, plan.config.temperature, plan.config.top_k, plan.config.max_new_tokens) == (
        "sampling", 0.5, 7, 9)
    assert tiny_engine.plan(presets.load("greedy")).strategy == "greedy"  # a preset's explicit do_sample wins
    assert presets.load(genconfig.MODEL).generation == {}

    from rich.console import Console

    from llmgen import preset_views

    shown = Console(record=True, width=200)
    preset_views.show(presets.load(genconfig.MODEL), shown, engine=tiny_engine)
    text = shown.export_text()
    assert "the model's own generation_config (tiny-llama):\n" in text and "  temperature: 0.5\n" in text
    assert "strategy: sampling" in text and "  top_k: 7\n" in text.split("effective generation settings")[1]
    assert ("model", "the model's own generation_config") in complete_preset("mo")
    with pytest.raises(UsageError, match="'model' has no settings of its own to export"):
        preset_files.export(presets.load(genconfig.MODEL), Path("unused"))


def test_export_names_what_a_generation_config_cannot_hold(user_dirs: Path, tmp_path: Path) -> None:
    folder = presets.user_dir()
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text("extends: greedy\nsystem: Be brief.\nquant: none\ngeneration:\n  top_k: 3\n")
    path, left_out = preset_files.export(presets.load("mine"), tmp_path / "new" / "dir")
    assert left_out == ["system", "quant"]
    written = json.loads(path.read_text())
    assert path.name == genconfig.FILE_NAME and "system" not in written and "quant" not in written
    assert written["top_k"] == 3 and written["do_sample"] is False  # after extends, defaults written out


def test_a_failed_export_leaves_the_existing_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / genconfig.FILE_NAME
    target.write_text('{"do_sample": true}')

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(UsageError, match="No space left"):
        preset_files.export(presets.load("greedy"), tmp_path)
    assert target.read_text() == '{"do_sample": true}' and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(("name", "message"), [
    ("greedy", "'greedy' is already a built-in preset"),
    ("model", "cannot be a preset name"),
    ("a/b", "cannot be a preset name"),
    ("x.yaml", "cannot be a preset name"),
])
def test_import_refuses_existing_and_bad_names(name: str, message: str, tmp_path: Path) -> None:
    path, _ = preset_files.export(presets.load("sampling"), tmp_path)
    with pytest.raises(UsageError, match=message):
        preset_files.import_file(path, name)


def test_import_overwrites_only_with_force(tmp_path: Path) -> None:
    path, _ = preset_files.export(presets.load("sampling"), tmp_path)
    preset_files.import_file(path, "mine", description="first")
    with pytest.raises(UsageError, match=r"'mine' is already a user preset"):
        preset_files.import_file(path, "mine")
    assert presets.load("mine").description == "first"
    preset_files.import_file(path, "mine", description="second", force=True)
    assert presets.load("mine").description == "second"


BAD_FILES = [
    ("bad.json", b'{"do_sample": tru', "invalid JSON at line 1, column 15"),
    ("bad.json", b"[1, 2]", "expected a JSON object of generation settings, got a JSON array"),
    ("bad.json", b'"greedy"', "expected a JSON object of generation settings, got a JSON string"),
    ("bad.json", b'{"num_beamz": 2}', "unknown generation setting 'num_beamz' (did you mean 'num_beams'?)"),
    ("bad.json", b'{"top_p": 1.5}', "top_p: Input should be less than or equal to 1"),
    ("bad.json", b'{"max_new_tokens": "5"}', 'max_new_tokens must be an integer, got the string "5"'),
    ("bad.json", b'{"num_beams": 2, "num_return_sequences": 4}', "`num_return_sequences` (4)"),
    ("bad.json", b'{"do_sample": true, "temperature": 0}', "temperature: Input should be greater than 0"),
    ("bad.json", b'{"system": "Be brief."}', "'system' is a preset key, not a generation setting"),
    ("bad.json", b'\xff\xfe{"top_k": 1}', "not UTF-8 text (byte 0)"),
    ("dir.json", None, "a directory, not a generation-config file"),
]


@pytest.mark.parametrize(("file_name", "content", "message"), BAD_FILES)
def test_bad_generation_config_file_is_one_line_naming_file_and_key(
    file_name: str, content: bytes | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / file_name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError) as raised:
        presets.load(str(path))
    assert str(raised.value) == f"{path}: {message}" or str(raised.value).startswith(f"{path}: {message}")
    assert "\n" not in str(raised.value)


def test_cli_round_trip_export_run_import(cli, builtin_engine, user_dirs: Path, tmp_path: Path) -> None:
    """The real commands: export a user preset (its llmgen keys named on stderr), run the file, import it."""
    folder = presets.user_dir()
    folder.mkdir(parents=True)
    (folder / "brief.yaml").write_text("extends: greedy\nsystem: Be brief.\n")
    out = tmp_path / "model-dir"
    exported = cli("presets", "export", "brief", "-o", str(out))
    assert (exported.returncode, exported.stdout) == (0, f"{out / genconfig.FILE_NAME}\n")
    assert "system" in exported.stderr and "generation config cannot hold" in exported.stderr

    ran = cli("run", "--preset", str(out / genconfig.FILE_NAME), "-n", "5", "--json", "Name a colour.")
    assert ran.returncode == 0, ran.stderr
    expected = builtin_engine.generate(Request(prompt="Name a colour."),
                                       builtin_engine.plan(presets.load("greedy"), {"max_new_tokens": 5}))
    result = json.loads(ran.stdout)
    assert (result["token_ids"], result["strategy"], result["preset"]) == (
        expected.token_ids, "greedy", genconfig.FILE_NAME)

    imported = cli("presets", "import", str(out / genconfig.FILE_NAME), "--name", "brief")
    assert (imported.returncode, imported.stdout) == (2, "")
    assert imported.stderr.startswith("error: 'brief' is already a user preset") and "--force" in imported.stderr
    forced = cli("presets", "import", str(out / genconfig.FILE_NAME), "--name", "brief", "--force")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, f"{folder / 'brief.yaml'}\n", "")
    assert presets.load("brief").generation == presets.load("greedy").generation

    bad = tmp_path / "bad.json"
    bad.write_text('{"top_k": -1}')
    refused = cli("run", "--preset", str(bad), "hi")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.strip() == f"error: {bad}: top_k: Input should be greater than or equal to 0 (got -1)"
