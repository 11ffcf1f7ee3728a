"""Record what transformers 4.55's own contrastive search, DoLa and group beam search generate, as test fixtures.

Run with llmgen's Python: `.venv/bin/python bench/record_reference.py [--ref-python PATH]`. It exports the
built-in model as a plain Hugging Face directory, then re-runs itself under the 4.55 interpreter (default
/work/ref455/bin/python, or $LLMGEN_REF_PYTHON), which calls 4.55's `generate(penalty_alpha=..., dola_layers=...,
num_beam_groups=...)` on every case and writes tests/decoding/fixtures/reference_455.json.
Tiny models are rebuilt from a config and seed (tests/decoding/tiny_model.py); the built-in model's prompts are
stored as the token ids 4.55's tokenizer and chat template gave, with the text they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "decoding")]

import _reference  # noqa: E402

FIXTURE = ROOT / "tests" / "decoding" / "fixtures" / "reference_455.json"
TIED = {"tie_word_embeddings": True}
RAW = {"text": "The history of the printing press is"}
CHAT = {"messages": [{"role": "user", "content": "Name three uses of copper."}]}
CHAT2 = {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why is the sky blue?"}]}
TINY_PROMPTS = [[1, 5, 17, 33, 8], [1, 40, 41, 12, 7, 66, 3, 90]]

CONTRASTIVE = [("tiny", p, {"penalty_alpha": a, "top_k": k}) for p in TINY_PROMPTS for a, k in ((0.6, 4), (0.3, 6), (0.9, 2))]
CONTRASTIVE += [
    ("tiny", TINY_PROMPTS[0], {"penalty_alpha": 0.5, "top_k": 3, "repetition_penalty": 1.3}),
    ("smollm2", RAW, {"penalty_alpha": 0.6, "top_k": 4}),
    ("smollm2", CHAT, {"penalty_alpha": 0.4, "top_k": 6}),
    ("smollm2", CHAT2, {"penalty_alpha": 0.6, "top_k": 4, "repetition_penalty": 1.2}),
]
DOLA = [("tiny", p, {"dola_layers": d}) for p in TINY_PROMPTS for d in ("low", "high", [1, 3])]
DOLA += [
    ("tiny", TINY_PROMPTS[1], {"dola_layers": "high", "repetition_penalty": 1.2}),
    ("tiny", TINY_PROMPTS[0], {"dola_layers": [0, 2], "repetition_penalty": 1.2}),
    ("tiny-tied", TINY_PROMPTS[0], {"dola_layers": "low"}),
    ("tiny-tied", TINY_PROMPTS[1], {"dola_layers": "high", "repetition_penalty": 1.2}),
    ("smollm2", RAW, {"dola_layers": "high", "repetition_penalty": 1.2}),
    ("smollm2", RAW, {"dola_layers": "low"}),
    ("smollm2", CHAT, {"dola_layers": [8, 16], "repetition_penalty": 1.2}),
    ("smollm2", CHAT2, {"dola_layers": "high"}),
]
GROUP_BEAM = [
    ("tiny", TINY_PROMPTS[0], {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.5, "num_return_sequences": 2}),
    ("tiny", TINY_PROMPTS[1], {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0, "num_return_sequences": 3}),
    ("tiny", TINY_PROMPTS[0], {"num_beams": 4, "num_beam_groups": 4, "diversity_penalty": 2.0, "num_return_sequences": 4,
                               "repetition_penalty": 1.3}),
    ("tiny", TINY_PROMPTS[1], {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.5, "length_penalty": 0.5,
                               "early_stopping": True}),
    ("smollm2", RAW, {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0, "num_return_sequences": 3}),
    ("smollm2", CHAT, {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.5, "num_return_sequences": 2}),
]
NEW_TOKENS = {"tiny": 20, "tiny-tied": 20, "smollm2": 16}


def prompt_ids(prompt: list[int] | dict, tokenizer) -> list[int]:  # noqa: ANN001
    if isinstance(prompt, list):
        return prompt
    if "text" in prompt:
        return tokenizer(prompt["text"])["input_ids"]
    return tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True)


def record(builtin_dir: Path) -> dict:
    """Every case through 4.55's in-library implementation (this runs under 4.55)."""
    import torch
    import transformers
    from tiny_model import TINY_CONFIG, build_tiny

    assert transformers.__version__.startswith("4.55"), transformers.__version__
    models = {"tiny": build_tiny(TINY_CONFIG, seed=0), "tiny-tied": build_tiny({**TINY_CONFIG, **TIED}, seed=1),
              "smollm2": _reference.load_model(builtin_dir)}
    tokenizer = _reference.load_tokenizer(builtin_dir)
    cases = []
    for strategy, table in (("contrastive", CONTRASTIVE), ("dola", DOLA), ("group_beam", GROUP_BEAM)):
        for model_name, prompt, settings in table:
            ids = prompt_ids(prompt, tokenizer)
            settings = {**settings, "do_sample": False, "max_new_tokens": NEW_TOKENS[model_name]}
            input_ids = torch.tensor([ids])
            out = models[model_name].generate(
                input_ids, attention_mask=torch.ones_like(input_ids), return_dict_in_generate=True,
                output_scores=True, **settings,
            )
            case = {"strategy": strategy, "model": model_name, "prompt": prompt if isinstance(prompt, dict) else None,
                    "prompt_ids": ids, "settings": settings, "expected": out.sequences[:, len(ids):].tolist()}
            if strategy == "group_beam":
                case["sequences_scores"] = out.sequences_scores.tolist()
            cases.append(case)
    return {
        "recorded_with": {"transformers": transformers.__version__, "torch": torch.__version__},
        "tiny_models": {"tiny": {"config": TINY_CONFIG, "seed": 0}, "tiny-tied": {"config": {**TINY_CONFIG, **TIED}, "seed": 1}},
        "cases": cases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-python", help="the transformers 4.55 interpreter")
    parser.add_argument("--builtin-dir", type=Path, help="exported built-in model (made when missing)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    builtin_dir = args.builtin_dir or Path(tempfile.gettempdir()) / "llmgen-ref" / "smollm2"
    if args.worker:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(record(builtin_dir), indent=1) + "\n")
        print(f"wrote {FIXTURE}")
        return
    python = _reference.ref_python(args.ref_python)
    if python is None:
        sys.exit("the transformers 4.55 environment is missing: pass --ref-python or set LLMGEN_REF_PYTHON")
    _reference.export_builtin(builtin_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([python, __file__, "--worker", "--builtin-dir", str(builtin_dir)], check=True, env=env)


if __name__ == "__main__":
    main()
