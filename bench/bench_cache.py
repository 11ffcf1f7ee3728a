"""KV-cache choices: memory of long generations (dynamic vs quantized), and `--compile` with the static cache.

Memory: for 2k, 8k and 16k total tokens, the built-in model reaches the total by a long prefill (in chunks of
1024, so that attention activations stay small) plus a few decode steps: decoding thousands of tokens one by one
is out of reach on a small CPU, and the cache holds the same keys and values either way. Each arm runs in its own
process, so its peak RSS is its own. The KV figure is the bytes the cache object holds (quantized data, scales and
zeros, and the unquantized residual), at its largest over the decode steps. 16k is past the model's 8k context:
the figures are the cache's, the text would be meaningless.

Compile: greedy decoding of --new tokens with the default (dynamic) cache, against the static cache compiled with
torch.compile (`--compile`): time to first token and decode tokens/s, in a first process (inductor cache empty:
compiling included), a warm process (inductor cache kept, as llmgen keeps it under its cache dir) and a second call
in the same process.
Run: `.venv/bin/python bench/bench_cache.py [--totals 2048,8192,16384] [--new 64]` (`--totals ""`: compile only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DECODE_STEPS = 8
CHUNK = 1024


def cache_bytes(cache: object) -> int:
    """Bytes of every tensor a cache's layers hold (quantized tensors and their metadata included), each once."""
    import torch

    seen: dict[int, int] = {}

    def walk(value: object) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel():
                seen[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    for layer in cache.layers:
        walk(list(vars(layer).values()))
    return sum(seen.values())


def memory_arm(total: int, cache: str) -> dict:
    """One long generation in this process: peak KV bytes, peak RSS, prefill and decode speed."""
    import resource

    import torch
    from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList, QuantizedCache

    from llmgen.caches import QUANTIZED_DEFAULTS
    from llmgen.engine import Engine

    engine = Engine.load("builtin", quant="none", device="cpu", dtype="float32")
    model = engine.model
    text_config = model.config.get_text_config(decoder=True)
    if cache == "quantized":
        kv = QuantizedCache(config=text_config, **QUANTIZED_DEFAULTS)
    else:
        kv = DynamicCache(config=text_config)
    torch.manual_seed(0)
    ids = torch.randint(1000, 40000, (1, total - DECODE_STEPS))
    peak, stamps = [0], []

    class Probe(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            stamps.append(time.perf_counter())
            peak[0] = max(peak[0], cache_bytes(kv))
            return scores

    start = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), past_key_values=kv, do_sample=False,
                   max_new_tokens=DECODE_STEPS, min_new_tokens=DECODE_STEPS, prefill_chunk_size=CHUNK,
                   logits_processor=LogitsProcessorList([Probe()]), pad_token_id=engine.tokenizer.pad_token_id)
    end = time.perf_counter()
    peak[0] = max(peak[0], cache_bytes(kv))
    return {
        "kv_bytes": peak[0],
        "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "prefill_tps": (total - DECODE_STEPS) / (stamps[0] - start),
        "decode_tps": DECODE_STEPS / (end - stamps[0]),
    }


def compile_arm(new: int, compiled: bool, calls: int) -> list[dict]:
    """`calls` greedy generations of `new` tokens: time to first token and decode tokens/s of each."""
    from llmgen import presets
    from llmgen.engine import Engine, Request

    engine = Engine.load("builtin", quant="none", device="cpu", dtype="float32")
    settings = {"max_new_tokens": new, "min_new_tokens": new}
    if compiled:
        settings |= {"cache_implementation": "static", "disable_compile": False}
    plan = engine.plan(presets.resolve("greedy"), settings)
    out = []
    for _ in range(calls):
        result = engine.generate(Request(prompt="Write a story about a lighthouse keeper."), plan, on_text=lambda t: None)
        decode_s = result.total_s - (result.ttft_s or 0.0)
        out.append({"ttft_s": result.ttft_s, "decode_tps": (result.completion_tokens - 1) / decode_s})
    return out


def child(args: list[str], env: dict[str, str] | None = None) -> object:
    """Run one arm in a fresh process; its JSON answer."""
    proc = subprocess.run([sys.executable, __file__, "--arm", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if proc.returncode:
        raise SystemExit(f"arm {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--totals", default="2048,8192,16384")
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--arm", nargs="+")
    args = parser.parse_args()
    if args.arm:
        kind, *rest = args.arm
        if kind == "memory":
            answer: object = memory_arm(int(rest[0]), rest[1])
        else:
            answer = compile_arm(int(rest[0]), rest[1] == "compiled", int(rest[2]))
        print(json.dumps(answer))
        return

    print(machine())
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    print(f"\nKV memory, dynamic (baseline) vs quantized (HQQ 4-bit); prefill in chunks of {CHUNK}, then "
          f"{DECODE_STEPS} decode steps")
    print(f"{'tokens':>6} | {'KV MiB dyn':>10} {'quant':>8} {'ratio':>6} | {'RSS MiB dyn':>11} {'quant':>8} "
          f"{'ratio':>6} | {'decode tok/s dyn':>16} {'quant':>6} {'ratio':>6} | {'prefill ratio':>13}")
    mib = 1 << 20
    for total in [int(t) for t in args.totals.split(",") if t]:  # --totals "": the compile part alone
        dyn, quant = child(["memory", str(total), "dynamic"]), child(["memory", str(total), "quantized"])
        print(f"{total:>6} | {dyn['kv_bytes'] / mib:>10.1f} {quant['kv_bytes'] / mib:>8.1f} "
              f"{quant['kv_bytes'] / dyn['kv_bytes']:>5.2f}x | {dyn['rss_bytes'] / mib:>11.0f} "
              f"{quant['rss_bytes'] / mib:>8.0f} {quant['rss_bytes'] / dyn['rss_bytes']:>5.2f}x | "
              f"{dyn['decode_tps']:>16.1f} {quant['decode_tps']:>6.1f} {quant['decode_tps'] / dyn['decode_tps']:>5.2f}x"
              f" | {quant['prefill_tps'] / dyn['prefill_tps']:>12.2f}x", flush=True)

    print(f"\n--compile (static cache) vs the default dynamic cache: greedy, {args.new} new tokens")
    base = child(["compile", str(args.new), "default", "2"])
    with tempfile.TemporaryDirectory() as inductor:
        env = {"TORCHINDUCTOR_CACHE_DIR": inductor}
        first = child(["compile", str(args.new), "compiled", "2"], env)
        warm = child(["compile", str(args.new), "compiled", "1"], env)
    rows = [("default, dynamic cache (baseline)", base[1]), ("compiled, first process (cold)", first[0]),
            ("compiled, same process, 2nd call", first[1]), ("compiled, new process, warm cache", warm[0])]
    print(f"{'arm':<36} {'first token s':>13} {'ratio':>7} {'decode tok/s':>12} {'ratio':>6}")
    for name, row in rows:
        print(f"{name:<36} {row['ttft_s']:>13.2f} {row['ttft_s'] / base[1]['ttft_s']:>6.1f}x "
              f"{row['decode_tps']:>12.1f} {row['decode_tps'] / base[1]['decode_tps']:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
