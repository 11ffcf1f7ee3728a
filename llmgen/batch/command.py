"""The `llmgen batch` command: check the paths, lock the output, load the model, run, report progress.

Every path is checked before the model loads, so a bad one costs nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from llmgen import console
from llmgen.batch.records import count_records
from llmgen.batch.resume import Done, lock_output, recover
from llmgen.batch.runner import Summary, process
from llmgen.errors import UsageError

if TYPE_CHECKING:
    from llmgen.batch.cluster import ClusterOptions
    from llmgen.options import Options

STDIO = "-"


def parse_batch_size(value: str) -> int | None:
    """`auto` (None: chosen from free memory) or a positive integer."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise UsageError(f"--batch-size must be a positive integer or 'auto', got '{value}'")
    return size


def run_command(opts: Options, input: str, output: str, batch_size: str, resume: bool,
                cluster: ClusterOptions | None = None) -> Summary:
    """`llmgen batch`: check the files, load the model, run every record, report. Exit code is the caller's.

    With `cluster` (`--engine ray`), Ray workers load the model and run the records instead of this process.
    """
    from llmgen.options import Session

    if cluster is not None:
        from llmgen.batch.cluster import require_ray

        require_ray()
    size = parse_batch_size(batch_size)
    stdout = sys.stdout.buffer  # taken now: a Ray run sends Ray's own notices from sys.stdout to stderr
    source = _input_path(input)
    target = _output_path(output, source, resume)
    with ExitStack() as stack:
        if target is not None:
            stack.enter_context(lock_output(target, output, quiet=opts.quiet))
            _refuse_overwrite(target, output, resume)
        done = recover(target) if target is not None and resume and target.exists() else Done()
        work: Callable[[IO[bytes], IO[bytes], Callable[[int], None]], Summary]
        if cluster is None:
            session = Session.open(opts, lambda d: d.preset)
            label = "batch"
            work = lambda stream_in, stream_out, advance: process(
                session, opts, stream_in, stream_out, size, done, advance)
        else:
            from llmgen.batch.cluster import started

            pool = stack.enter_context(started(opts, cluster, size))
            label = f"batch on {len(pool.actors)} Ray workers"
            work = lambda stream_in, stream_out, advance: pool.process(
                stream_in, stream_out, opts.raw, done, advance)
        total = count_records(source) if source is not None and source.is_file() else None
        start = time.perf_counter()
        stream_in = stack.enter_context(source.open("rb")) if source is not None else sys.stdin.buffer
        if target is None:
            stream_out: IO[bytes] = stdout
        else:
            stream_out = stack.enter_context(target.open("ab" if resume else "wb"))
        advance = stack.enter_context(_progress(total, show=console.err.is_terminal and not opts.quiet, label=label))
        try:
            summary = work(stream_in, stream_out, advance)
        except KeyboardInterrupt:
            if target is not None:
                console.note(f"interrupted; '--resume' continues {output} where it stopped")
            raise
    summary.wall_s = time.perf_counter() - start
    if not opts.quiet:
        console.note(summary.line())
    return summary


def _input_path(input: str) -> Path | None:
    """The input file; a FIFO, `<(...)` or a device such as /dev/null is read as a stream, like stdin."""
    if input == STDIO:
        return None
    path = Path(input).expanduser()
    if path.is_dir():
        raise UsageError(f"the input is a directory: {input}")
    if not path.exists():
        raise UsageError(f"input file not found: {input}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read the input file: {input}")
    return path


def _output_path(output: str, source: Path | None, resume: bool) -> Path | None:
    """The output file, refusing what would lose work: resuming stdout, overwriting the input or a result."""
    if output == STDIO:
        if resume:
            raise UsageError("--resume needs an output file", hint="give one with -o OUT.jsonl")
        return None
    path = Path(output).expanduser()
    if source is not None and path.exists() and os.path.samefile(path, source):
        raise UsageError("the output file is the input file")
    if path.is_dir():
        raise UsageError(f"the output is a directory: {output}", hint="give a file, e.g. -o OUT.jsonl")
    if not path.parent.is_dir():
        raise UsageError(f"no such directory for the output: {path.parent}")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise UsageError(f"cannot write the output {'file' if path.exists() else 'directory'}: "
                         f"{output if path.exists() else path.parent}")
    return path


def _refuse_overwrite(path: Path, output: str, resume: bool) -> None:
    """Checked under the lock: another run may have written the file until a moment ago."""
    if path.exists() and path.stat().st_size > 0 and not resume:
        raise UsageError(f"{output} already exists", hint="pass --resume to continue it, or remove it first")


@contextmanager
def _progress(total: int | None, show: bool, label: str = "batch") -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (records, tokens/s, ETA) when it is a terminal; else a no-op."""
    if not show:
        yield lambda tokens: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.perf_counter()
    tokens = 0
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=console.err, transient=True,
    ) as progress:
        task = progress.add_task("batch", total=total, rate="")

        def advance(new_tokens: int) -> None:
            nonlocal tokens
            tokens += new_tokens
            elapsed = time.perf_counter() - start
            progress.update(task, advance=1, rate=f"{tokens / elapsed:.1f} tokens/s" if elapsed > 0 else "")

        yield advance
