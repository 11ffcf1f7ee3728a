"""What makes `llmgen batch` output safe to kill and resume: the ordered writer, recovery, the output lock.

The ordered writer writes and flushes a record as soon as it and every record before it are done, so
the output is always a prefix of the finished file (plus at most one cut line after a kill).
`recover` relies on that: it drops a cut last line and counts the records of each id already written.
Two runs writing one file would interleave and truncate each other's records, so a run holds an
exclusive lock on its output from before it reads or truncates it until it exits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llmgen import console, locks
from llmgen.errors import UsageError


@dataclass
class Done:
    """What an earlier run's output already holds: how many records of each id, and how many failed."""

    ids: Counter[str] = field(default_factory=Counter)
    errors: int = 0


def recover(path: Path) -> Done:
    """Read an earlier run's output; cut a truncated last line (a killed run) off the file."""
    done = Done()
    good = 0
    with path.open("r+b") as stream:
        for number, data in enumerate(stream, 1):
            if not data.endswith(b"\n"):
                break
            try:
                record = json.loads(data)
                key = json.dumps(record["id"])
            except (ValueError, TypeError, KeyError):
                raise UsageError(
                    f"{path} line {number} is not an llmgen batch record", hint="is -o the right file?"
                ) from None
            done.ids[key] += 1
            done.errors += "error" in record
            good += len(data)
        stream.truncate(good)
    return done


class OrderedWriter:
    """Writes records in input order, each as soon as it and all before it are done, then flushes.

    Each record is one write of one line, so a kill leaves complete lines and at most one cut one.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.next = 0
        self.pending: dict[int, bytes | None] = {}

    def skip(self, seq: int) -> None:
        """A record an earlier run already wrote."""
        self._put(seq, None)

    def put(self, seq: int, record: dict[str, Any]) -> None:
        self._put(seq, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    def _put(self, seq: int, data: bytes | None) -> None:
        self.pending[seq] = data
        wrote = False
        while self.next in self.pending:
            data = self.pending.pop(self.next)
            if data is not None:
                self.stream.write(data)
                wrote = True
            self.next += 1
        if wrote:
            self.stream.flush()


@contextmanager
def lock_output(path: Path, output: str, quiet: bool = False) -> Iterator[None]:
    """Hold `.NAME.lock` beside the output while the run writes it; a second run refuses at once, naming our pid.

    Devices and pipes (`-o /dev/null`) are not locked; a filesystem that refuses locks gets a warning.
    """
    real = path.resolve()
    with ExitStack() as stack:
        if real.is_file() or not real.exists():
            try:
                stack.enter_context(locks.locked(real.with_name(f".{real.name}.lock"), wait=False))
            except locks.Busy as busy:
                raise UsageError(f"{output} is being written by another llmgen batch ({busy.holder})",
                                 hint="wait for it to finish, or write to another file") from None
            except OSError as exc:
                if not quiet:
                    console.warning(f"cannot lock {output} ({exc.strerror}); make sure no other run writes to it")
        yield
