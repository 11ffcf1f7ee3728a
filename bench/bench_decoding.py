"""Per-token decode time of llmgen's contrastive, DoLa and diverse-beam loops against transformers 4.55's own.

Both sides run the built-in model (exported once as a plain Hugging Face directory, so they load the same float32
weights), the same chat prompt and settings; the 4.55 side runs as a subprocess of its own environment
(`--ref-python`, `$LLMGEN_REF_PYTHON`, default /work/ref455/bin/python). Per-token time is
(time for N new tokens - time for 1) / (N - 1), with `min_new_tokens` pinning the length, best of several runs;
the two sides alternate so drifting machine load hits both. Goal (SPEC.md): ours / 4.55 <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _reference  # noqa: E402

STRATEGIES = {
    "contrastive": {"penalty_alpha": 0.6, "top_k": 4},
    "dola": {"dola_layers": "high", "repetition_penalty": 1.2},
    "diverse-beam": {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 1.0, "num_return_sequences": 3},
}
MESSAGES = [{"role": "user", "content": "Explain in a few sentences how a refrigerator keeps food cold."}]


def measure(builtin_dir: Path, tokens: int, repeats: int) -> dict:
    """Seconds per decoded token for each strategy, with whichever transformers this interpreter has."""
    import torch
    import transformers

    model = _reference.load_model(builtin_dir)
    ids = _reference.load_tokenizer(builtin_dir).apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    input_ids = torch.tensor([list(getattr(ids, "input_ids", ids))])
    ours = transformers.__version__.startswith("5")

    def run(settings: dict, n: int) -> float:
        kwargs = {**settings, "do_sample": False, "max_new_tokens": n, "min_new_tokens": n}
        if ours:
            from transformers import GenerationConfig

            from llmgen.decoding import decoding_loop

            config = GenerationConfig(eos_token_id=2, pad_token_id=2, **kwargs)
            kwargs = {"generation_config": config, "custom_generate": decoding_loop(config, None)}
        start = time.perf_counter()
        model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        return time.perf_counter() - start

    results = {}
    for name, settings in STRATEGIES.items():
        run(settings, 2)  # warm-up
        full = min(run(settings, tokens) for _ in range(repeats))
        one = min(run(settings, 1) for _ in range(repeats))
        results[name] = (full - one) / (tokens - 1)
    return {"per_token_s": results, "transformers": transformers.__version__, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-python", help="the transformers 4.55 interpreter")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and 4.55")
    parser.add_argument("--builtin-dir", type=Path, default=Path(tempfile.gettempdir()) / "llmgen-ref" / "smollm2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker:
        print(json.dumps(measure(args.builtin_dir, args.tokens, args.repeats)))
        return
    python = _reference.ref_python(args.ref_python)
    if python is None:
        print("baseline missing: no transformers 4.55 environment (pass --ref-python or set LLMGEN_REF_PYTHON)")
        return
    _reference.export_builtin(args.builtin_dir)
    worker = [__file__, "--worker", "--builtin-dir", str(args.builtin_dir), "--tokens", str(args.tokens),
              "--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs: dict[str, list[dict]] = {"ours": [], "ref": []}
    for _ in range(args.rounds):
        for side, exe in (("ours", sys.executable), ("ref", python)):
            out = subprocess.run([exe, *worker], capture_output=True, text=True, env=env, check=True).stdout
            runs[side].append(json.loads(out.strip().splitlines()[-1]))
    best = {side: {name: min(r["per_token_s"][name] for r in rs) for name in STRATEGIES} for side, rs in runs.items()}

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {runs['ours'][0]['threads']}, load average {os.getloadavg()[0]:.2f}")
    print(f"ours: transformers {runs['ours'][0]['transformers']}, torch {runs['ours'][0]['torch']}; "
          f"baseline: transformers {runs['ref'][0]['transformers']}, torch {runs['ref'][0]['torch']}")
    print(f"built-in SmolLM2-135M-Instruct float32 CPU, chat prompt, {args.tokens} new tokens, "
          f"best of {args.repeats} x {args.rounds} rounds")
    print(f"{'strategy':14} {'ours ms/token':>14} {'4.55 ms/token':>14} {'ratio':>7}  goal <= 1.20")
    for name in STRATEGIES:
        ours, ref = best["ours"][name], best["ref"][name]
        print(f"{name:14} {ours * 1e3:14.1f} {ref * 1e3:14.1f} {ours / ref:7.2f}  {'ok' if ours / ref <= 1.2 else 'OVER'}")


if __name__ == "__main__":
    main()
