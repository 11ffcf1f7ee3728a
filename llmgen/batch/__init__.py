"""`llmgen batch`: a JSONL file of requests through the engine, batched, in input order, resumable.

`records` reads the input, `runner` plans, batches and generates, `resume` writes in order, recovers
a cut file and locks the output, `command` is the command around them.
"""

from llmgen.batch.command import run_command

__all__ = ["run_command"]
