"""Two llmgen processes at once on the same cores: each one's time against one run alone (goal: at most 2.5x).

For each OpenMP wait policy, one `llmgen run` alone, then two started together; rounds alternate and the medians
are printed. llmgen sets OMP_WAIT_POLICY=PASSIVE itself (llmgen/__init__.py). The baseline is OpenMP's default
(an empty value, which llmgen leaves alone and OpenMP ignores): threads spin a while as they wait for work, and two
processes' spinning threads take each other's cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import machine

LLMGEN = Path(sys.executable).with_name("llmgen")
ARGS = ["run", "Write a story about the sea.", "-n", "96", "--seed", "1", "-p", "greedy"]
ROUNDS = 3


def timed(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(LLMGEN), *ARGS], env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    print(machine())
    base = {**os.environ, "HF_HUB_OFFLINE": "1"}
    timed(base)  # the model converted and cached, the files warm
    results: dict[str, tuple[list[float], list[float]]] = {"": ([], []), "PASSIVE": ([], [])}
    for _ in range(ROUNDS):
        for policy, (alone, pair) in results.items():
            env = {**base, "OMP_WAIT_POLICY": policy}
            alone.append(timed(env))
            with ThreadPoolExecutor(2) as pool:
                pair.extend(pool.map(timed, [env, env]))
    print(f"`llmgen {' '.join(ARGS)}`, {ROUNDS} rounds, medians; load average now {os.getloadavg()[0]:.2f}")
    print(f"{'OMP_WAIT_POLICY':16} {'alone':>8} {'two at once':>12} {'ratio':>7}  (goal: at most 2.5x)")
    for policy, (alone, pair) in results.items():
        one, two = statistics.median(alone), statistics.median(pair)
        note = "  <- llmgen's default" if policy == "PASSIVE" else ""
        print(f"{policy or '(default)':16} {one:7.2f}s {two:11.2f}s {two / one:6.2f}x{note}")


if __name__ == "__main__":
    main()
