"""Chat: per-turn latency with the KV cache of earlier turns reused, against re-encoding the whole history.

A long conversation on the built-in model: every turn sends a ~70-token message and gets a reply of
exactly --reply tokens (greedy), so both arms do the same decoding work and differ only in how much
of the prompt they encode. The two arms run turn by turn, interleaved, so machine load hits both.
Run: `.venv/bin/python bench/bench_chat.py [--turns N] [--reply N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MESSAGE = ("Turn {i}. Here is some more background about the project we are planning: a small garden with "
           "tomatoes, beans, herbs and a pond, watered from a rain barrel. What should I do next, and why?")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument("--reply", type=int, default=24)
    args = parser.parse_args()

    from llmgen import presets
    from llmgen.chat import Conversation
    from llmgen.engine import Engine

    print(machine())
    engine = Engine.load("builtin", quant="none", device="cpu", dtype="float32")
    settings = {"max_new_tokens": args.reply, "min_new_tokens": args.reply}
    reused = Conversation(engine, presets.resolve("greedy"), overrides=settings)
    fresh = Conversation(engine, presets.resolve("greedy"), overrides=settings)
    fresh.cache = None  # the baseline: generate encodes the whole history every turn
    reused.reply("Warm-up.")
    reused.reset()

    print(f"{'turn':>4} {'prompt':>6} {'reused':>6} | {'first token (s)':>21} | {'turn total (s)':>21}")
    print(f"{'':>4} {'tokens':>6} {'tokens':>6} | {'reuse':>6} {'none':>6} {'ratio':>7} | "
          f"{'reuse':>6} {'none':>6} {'ratio':>7}")
    rows = []
    for i in range(args.turns):
        a = reused.reply(MESSAGE.format(i=i)).result
        b = fresh.reply(MESSAGE.format(i=i)).result
        same = a.token_ids == b.token_ids
        rows.append((a, b))
        print(f"{i + 1:>4} {a.prompt_tokens:>6} {a.extra['cached_tokens']:>6} | {a.ttft_s:6.3f} {b.ttft_s:6.3f} "
              f"{a.ttft_s / b.ttft_s:6.2f}x | {a.total_s:6.3f} {b.total_s:6.3f} {a.total_s / b.total_s:6.2f}x"
              f"{'' if same else '  (replies differ)'}")
    late = rows[len(rows) // 2 :]
    ttft = statistics.median(a.ttft_s / b.ttft_s for a, b in late)
    total = statistics.median(a.total_s / b.total_s for a, b in late)
    print(f"second half of the chat (prompts {late[0][0].prompt_tokens}-{late[-1][0].prompt_tokens} tokens), "
          f"median with reuse / without: first token {ttft:.2f}x, whole turn {total:.2f}x")
    print(f"whole chat: {sum(a.total_s for a, _ in rows):.1f}s with reuse, "
          f"{sum(b.total_s for _, b in rows):.1f}s without")


if __name__ == "__main__":
    main()
