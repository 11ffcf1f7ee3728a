"""Foundation benchmarks: start-up, load, engine and streaming overhead, quantization and dtype.

Every figure is a ratio against a baseline measured in the same run:
- `llmgen --help` / `presets list` against a bare `python -c pass` start;
- the cached load of the built-in model against its first conversion from GGUF;
- single-stream greedy decoding through the engine against a bare `model.generate` (goal <= 1.05x),
  and with the streaming callback on against off (goal <= 1.03x);
- decode tokens/s and peak memory of 4-bit, 8-bit and bfloat16 against float32 unquantized.
Run: `make bench` or `.venv/bin/python bench/bench_engine.py [--tokens N]`.
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
from common import machine, median_time  # noqa: E402

LLMGEN = Path(sys.executable).with_name("llmgen")
PROMPT = "Explain in a few sentences why the sky is blue."
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def startup() -> None:
    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    bare = median_time(lambda: run(sys.executable, "-c", "pass"), 5)
    for args in (["--help"], ["presets", "list"]):
        took = median_time(lambda: run(str(LLMGEN), *args), 5)
        print(f"llmgen {' '.join(args):<13} {took * 1000:6.0f} ms  = {took / bare:.1f}x a bare python start "
              f"({bare * 1000:.0f} ms)")
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys; from llmgen.cli import app\n"
         "try: app(['presets', 'list'], standalone_mode=False)\nexcept SystemExit: pass\n"
         "print([m for m in ('torch', 'transformers') if m in sys.modules])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    print(f"modules imported by 'presets list' among torch/transformers: {heavy}")


LOAD_SNIPPET = """
import json, time, os
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from llmgen.engine import Engine
first = Engine.load("builtin", quant="none", device="cpu").info.load_s  # converts when the cache is empty
again = Engine.load("builtin", quant="none", device="cpu").info.load_s  # every lazy import done by now
print(json.dumps({"load_s": first, "again_s": again}))
"""


def load_times() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        runs = [
            json.loads(subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1])
            for _ in range(2)
        ]
    first = runs[0]["load_s"]
    cached = min(r["load_s"] for r in runs[1:])
    warm = min(r["again_s"] for r in runs[1:])
    print(f"built-in model load: first (GGUF conversion) {first:.2f}s; from the cache {cached:.2f}s in a fresh "
          f"process (lazy transformers imports included) = {cached / first:.3f}x the first, {warm:.2f}s once "
          f"imports are done = {warm / first:.3f}x")


def overhead(tokens: int, repeats: int) -> None:
    import torch

    from llmgen import presets
    from llmgen.engine import Engine, Request

    engine = Engine.load("builtin", quant="none", device="cpu")
    request = Request(prompt=PROMPT)
    ids = torch.tensor([engine.encode(request)])
    plan = engine.plan(presets.resolve("greedy"), {"max_new_tokens": tokens, "min_new_tokens": tokens})
    config = plan.config

    def bare() -> None:
        engine.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)

    sink: list[str] = []
    runs = {
        "bare model.generate": bare,
        "engine, no streaming": lambda: engine.generate(ids[0].tolist(), plan),
        "engine, streaming": lambda: engine.generate(ids[0].tolist(), plan, on_text=sink.append),
    }
    times = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    for _ in range(repeats):  # interleaved, so drift in machine load hits every variant alike
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    base = best["bare model.generate"]
    for name, took in best.items():
        print(f"{name:<22} {tokens / took:6.1f} tokens/s  = {took / base:.3f}x the time of bare model.generate")
    print(f"streaming callback on vs off: {best['engine, streaming'] / best['engine, no streaming']:.3f}x")


VARIANT_SNIPPET = """
import json, resource, sys, time
from llmgen import presets
from llmgen.engine import Engine, Request
quant, dtype, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = Engine.load("builtin", quant=quant, dtype=dtype, device="cpu")
plan = engine.plan(presets.resolve("greedy"), {"max_new_tokens": tokens, "min_new_tokens": tokens})
ids = engine.encode(Request(prompt=sys.argv[4]))
engine.generate(ids, plan)
result = min((engine.generate(ids, plan) for _ in range(3)), key=lambda r: r.total_s)
decode = (result.completion_tokens - 1) / (result.total_s - result.ttft_s)
print(json.dumps({"load_s": engine.info.load_s, "prefill_s": result.ttft_s, "decode_tps": decode,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def variants(tokens: int) -> None:
    rows = {}
    for quant, dtype in (("none", "float32"), ("none", "bfloat16"), ("4bit", "float32"), ("8bit", "float32")):
        out = subprocess.run([sys.executable, "-c", VARIANT_SNIPPET, quant, dtype, str(tokens), PROMPT],
                             capture_output=True, text=True, check=True).stdout
        rows[(quant, dtype)] = json.loads(out.strip().splitlines()[-1])
    base = rows[("none", "float32")]
    print(f"{'quant/dtype':<16}{'decode tok/s':>13}{'vs fp32':>9}{'prefill s':>11}{'vs fp32':>9}"
          f"{'load s':>8}{'peak MiB':>10}{'vs fp32':>9}")
    for (quant, dtype), r in rows.items():
        print(f"{quant + '/' + dtype:<16}{r['decode_tps']:>13.1f}{r['decode_tps'] / base['decode_tps']:>8.2f}x"
              f"{r['prefill_s']:>11.3f}{r['prefill_s'] / base['prefill_s']:>8.2f}x{r['load_s']:>8.2f}"
              f"{r['peak_mib']:>10.0f}{r['peak_mib'] / base['peak_mib']:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    startup()
    load_times()
    overhead(args.tokens, args.repeats)
    variants(args.tokens)


if __name__ == "__main__":
    main()
