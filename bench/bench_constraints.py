"""Structured-output benchmark: what a constraint costs, as ratios against the same run unconstrained.

On the built-in model, unquantized, greedy:
- tokens/s of a JSON-Schema-constrained run against the same prompt unconstrained (goal: at most 10% cost per
  token), with the mask time per token the processor measured itself;
- schema compile time, cold (the tokenizer wrapped and the grammar compiled) and cached (a copy per generation);
- 64 constrained batch records (bench/prompts64.jsonl, each with a small schema) against the same 64 free.
Run: `.venv/bin/python bench/bench_constraints.py [--tokens N] [--prompts N]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

PROMPTS = Path(__file__).parent / "prompts64.jsonl"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}, "tags": {
        "type": "array", "items": {"type": "string"}}},
    "required": ["answer", "confidence", "tags"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()

    from llmgen import constraints, presets
    from llmgen.engine import Engine, Request

    engine = Engine.load("builtin", quant="none", device="cpu", dtype="float32")
    greedy = presets.load("greedy")
    # ignore_eos-like: a long string field keeps both runs going to max_new_tokens.
    long_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    constraint = constraints.parse("json_schema", long_schema)
    free = engine.plan(greedy, {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens})
    bound = engine.plan(greedy, {"max_new_tokens": args.tokens, **constraint.written})
    request = Request(prompt="Write a long story about a lighthouse keeper, as JSON.")
    engine.generate(request, free)
    runs = {"free": [], "constrained": []}
    mask = []
    for _ in range(3):
        runs["free"].append(engine.generate(request, free))
        result = engine.generate(request, bound)
        runs["constrained"].append(result)
        mask.append(result.extra["constraint"]["mask_ms_per_token"])
    s_per_token = {k: min(r.total_s / max(1, r.completion_tokens) for r in v) for k, v in runs.items()}
    print(f"machine: {machine()}")
    print(f"greedy, {args.tokens} tokens: constrained/free time per token = "
          f"{s_per_token['constrained'] / s_per_token['free']:.3f} (goal <= 1.10); "
          f"masks {min(mask):.2f} ms of {1000 * s_per_token['constrained']:.1f} ms per token")

    from llmgen.constraints import _compiled, _tokenizers, compile_for

    _compiled.clear()
    _tokenizers.clear()
    eos = [engine.tokenizer.eos_token_id]
    width = engine.model.config.vocab_size
    start = time.perf_counter()
    compiled = compile_for(constraints.parse("json_schema", SCHEMA), engine.tokenizer, width, eos)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    compile_for(constraints.parse("json_schema", dict(SCHEMA, title="other")), engine.tokenizer, width, eos)
    warm_tokenizer = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(100):
        compile_for(constraints.parse("json_schema", SCHEMA), engine.tokenizer, width, eos).fresh()
    cached = (time.perf_counter() - start) / 100
    print(f"schema compile: cold (tokenizer + grammar) {1000 * cold:.1f} ms; a new schema {1000 * warm_tokenizer:.1f}"
          f" ms; cached (parse + copy) {1000 * cached:.2f} ms = {cached / cold:.4f} of cold")
    del compiled

    lines = [json.loads(line) for line in PROMPTS.read_text().splitlines()[: args.prompts]]
    requests = [Request(messages=r["messages"]) for r in lines]
    batch_free = engine.plan(greedy, {"max_new_tokens": 32})
    batch_bound = engine.plan(greedy, {"max_new_tokens": 32, **constraints.parse("json_schema", SCHEMA).written})
    timings, masks = {}, []
    for name, plan in (("free", batch_free), ("constrained", batch_bound)):
        start = time.perf_counter()
        steps = 0
        for i in range(0, len(requests), 16):
            results = engine.generate_batch(requests[i : i + 16], plan)
            steps += len(results) * max(r.completion_tokens for r in results)
            masks += [r.extra["constraint"]["mask_ms_per_token"] for r in results if "constraint" in r.extra]
        timings[name] = (time.perf_counter() - start) / max(1, steps)
    print(f"batch of {len(requests)} records (16 a call, 32 tokens): constrained/free time per row-step = "
          f"{timings['constrained'] / timings['free']:.3f}; masks {sum(masks) / len(masks):.2f} ms of "
          f"{1000 * timings['constrained']:.1f} ms per row-step")


if __name__ == "__main__":
    main()
