"""Ray benchmark: `llmgen batch --engine ray` with 1 and 2 local workers (1 CPU each) against the local engine.

The same chat prompts from bench/prompts64.jsonl, greedy, the built-in model unquantized. Every figure is
measured in this run; ratios are against the local engine with one torch thread (the same CPU as one worker):
- records/s and tokens/s while generating (each run's own summary line: start-up excluded);
- start-up: the whole command's wall time less its generating time (imports, Ray, workers loading the model),
  and Ray's own start (`ray.init` of a local Ray, then `ray.shutdown`) alone.
On a 2-core machine the point is the overhead, not the speed-up.
Run: `.venv/bin/python bench/bench_ray.py [--prompts N] [--tokens N]`.
"""

from __future__ import annotations

import argparse
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
SUMMARY = re.compile(r"batch: (\d+) records.* · (\d+) tokens · [\d.]+ tokens/s · ([\d.]+)s")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(source: Path, tokens: int, extra: list[str], threads: int) -> tuple[int, int, float, float]:
    """One `llmgen batch`: records, tokens, generating seconds (its summary), whole wall seconds."""
    with tempfile.TemporaryDirectory() as folder:
        command = [str(LLMGEN), "batch", str(source), "-o", str(Path(folder) / "out.jsonl"), "-n", str(tokens),
                   *LOAD, *extra]
        start = time.perf_counter()
        proc = subprocess.run(command, check=False, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - start
    found = SUMMARY.search(proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr}")
    return int(found[1]), int(found[2]), float(found[3]), wall


def ray_start() -> float:
    """Seconds to start a local Ray and shut it down again (no workers)."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    print(machine())
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines = PROMPTS.read_text(encoding="utf-8").splitlines()[: args.prompts]
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "prompts.jsonl"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{len(lines)} chat prompts, {args.tokens} new tokens, greedy, built-in model, float32, cpu")
        runs = {
            "local, 1 thread": run(source, args.tokens, [], 1),
            "local, 2 threads": run(source, args.tokens, [], 2),
            "ray, 1 worker x 1 CPU": run(source, args.tokens, ["--engine", "ray", "--workers", "1"], 1),
            "ray, 2 workers x 1 CPU": run(source, args.tokens, ["--engine", "ray", "--workers", "2"], 1),
        }
    _, base_tokens, base_s, _ = runs["local, 1 thread"]
    print(f"{'':24} {'records/s':>10} {'tokens/s':>10} {'x local 1t':>10} {'start-up s':>11}")
    for name, (records, tokens, seconds, wall) in runs.items():
        ratio = (tokens / seconds) / (base_tokens / base_s)
        print(f"{name:24} {records / seconds:10.2f} {tokens / seconds:10.1f} {ratio:10.2f} {wall - seconds:11.1f}")
    print(f"Ray's own start and stop (local, no workers): {ray_start():.1f}s")
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
