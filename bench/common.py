"""What every benchmark prints first: the machine and library versions it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def machine() -> str:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {platform.system()} {platform.machine()} {cpu}, {os.cpu_count()} cores, {gpu}; "
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
