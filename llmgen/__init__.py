"""llmgen: generate text with open causal language models on your own machine."""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads that wait for work sleep instead of spinning: two llmgen processes on the same cores then each
# take about 1.1x their time alone instead of 2x (bench/bench_threads.py). Set before torch loads its OpenMP runtime;
# a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("llmgen")  # pyproject.toml holds the one version number
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
