"""llmgen: generate text with open causal language models on your own machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmgen")  # pyproject.toml holds the one version number
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
