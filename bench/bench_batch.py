"""Batch benchmark: `llmgen batch` against one-at-a-time generation and transformers' continuous batching.

64 chat prompts from bench/prompts64.jsonl, 64 new tokens each, greedy, the built-in model unquantized.
Every figure is a ratio measured in this run against a named baseline:
- tokens/s of `llmgen batch` (a subprocess; its own summary line, load excluded) at batch sizes
  8/16/32/auto against the same prompts generated one at a time through `Engine.generate` (goal >= 8x);
- peak resident memory of each of those `llmgen batch` runs against `llmgen info` (the model loaded, nothing
  generated);
- transformers' continuous batching (`model.generate_batch`) on the same token ids against the same
  baseline, and against `llmgen batch --batch-size auto`.
Run: `.venv/bin/python bench/bench_batch.py [--prompts N] [--tokens N] [--threads N] [--baseline-prompts N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

LLMGEN = Path(sys.executable).with_name("llmgen")
PROMPTS = Path(__file__).parent / "prompts64.jsonl"
LOAD = ["--quant", "none", "--device", "cpu", "--dtype", "float32"]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_rss(command: list[str]) -> tuple[float, str]:
    """Run a command; its own peak resident memory in MiB (from wait4) and its stderr."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{stderr}")
    return usage.ru_maxrss / 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--sizes", default="8,16,32,auto")
    parser.add_argument("--baseline-prompts", type=int, default=None,
                        help="time one-at-a-time on the first N prompts only (its tokens/s is per token)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads here and in the llmgen runs (on a shared machine, 1 avoids thrashing)")
    args = parser.parse_args()
    print(machine())
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")

    from llmgen import presets
    from llmgen.engine import Engine, Request

    lines = PROMPTS.read_text(encoding="utf-8").splitlines()[: args.prompts]
    engine = Engine.load("builtin", quant="none", device="cpu", dtype="float32")
    plan = engine.plan(presets.resolve("greedy"), {"max_new_tokens": args.tokens})
    ids = [engine.encode(Request(messages=json.loads(line)["messages"])) for line in lines]
    print(f"{len(ids)} chat prompts ({min(map(len, ids))}-{max(map(len, ids))} tokens), {args.tokens} new tokens, "
          f"greedy, built-in model, float32, {engine.info.device}")

    engine.generate(ids[0], plan)  # warm-up
    start = time.perf_counter()
    alone = ids[: args.baseline_prompts or len(ids)]
    tokens = sum(engine.generate(p, plan).completion_tokens for p in alone)
    single = tokens / (time.perf_counter() - start)
    print(f"baseline: one at a time through Engine.generate   {single:7.1f} tokens/s ({len(alone)} prompts)")

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        loaded, _ = peak_rss([str(LLMGEN), "info", *LOAD])
        print(f"memory baseline: 'llmgen info' (model loaded)      {loaded:7.0f} MiB peak RSS")
        rates = {}
        for size in args.sizes.split(","):
            out = Path(tmp) / f"out-{size}.jsonl"
            rss, stderr = peak_rss([str(LLMGEN), "batch", str(source), "-o", str(out), "--batch-size", size,
                                    "-n", str(args.tokens), *LOAD])
            rate = float(re.search(r"([\d.]+) tokens/s", stderr).group(1))
            rates[size] = rate
            print(f"llmgen batch --batch-size {size:<5}                {rate:7.1f} tokens/s = {rate / single:5.1f}x "
                  f"one at a time; peak {rss:5.0f} MiB = {rss / loaded:.2f}x the loaded model "
                  f"(+{rss - loaded:.0f} MiB)")

    cb = continuous_batching(engine, ids, plan)
    if cb is not None:
        versus = f" = {cb / rates['auto']:.2f}x llmgen batch auto" if "auto" in rates else ""
        print(f"transformers continuous batching (generate_batch) {cb:7.1f} tokens/s = {cb / single:5.1f}x one at a "
              f"time{versus}")


def continuous_batching(engine, ids: list[list[int]], plan) -> float | None:  # noqa: ANN001
    """tokens/s of `model.generate_batch` on the same token ids and config; None (with the reason) if it fails."""
    import copy

    config = copy.deepcopy(plan.config)
    try:
        engine.model.generate_batch(inputs=ids[:2], generation_config=config, progress_bar=False)  # warm-up
        start = time.perf_counter()
        outputs = engine.model.generate_batch(inputs=ids, generation_config=config, progress_bar=False)
        took = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - report and go on: the comparison is optional
        print(f"transformers continuous batching: failed ({type(exc).__name__}: {exc})")
        return None
    return sum(len(o.generated_tokens) for o in outputs.values()) / took


if __name__ == "__main__":
    main()
