"""Exclusive locks between llmgen processes: one conversion per GGUF, one writer per batch output.

A lock is a file, locked with `flock`, that holds its owner's pid. The owner deletes it before
unlocking, so whoever then locks the old inode checks that the path still names it (else a third
process could lock a fresh file at the same path at the same time). A killed owner's file stays,
unlocked, and the next owner reuses it: the kernel drops a dead process's locks.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HOLDER_WAIT_S = 2.0  # how long to wait for a new owner to write its pid over a dead one's


class Busy(Exception):
    """Another process holds the lock; `holder` says which ("pid N")."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def locked(path: Path, *, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock at `path` for the block.

    With `wait` off, raises `Busy` at once when another process holds it; otherwise blocks, calling
    `on_wait` first so the user knows why. OSError (no such folder, a filesystem without locks) is
    the caller's to report.
    """
    fd = _acquire(path, wait, on_wait)
    try:
        yield
    finally:
        try:
            os.unlink(path)  # before unlocking: whoever waits on this inode then sees it is gone
        except OSError:
            pass
        os.close(fd)


def _acquire(path: Path, wait: bool, on_wait: Callable[[], None] | None) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise Busy(_holder(fd)) from None
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _names(path, fd):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the owner removed it between our open and our lock: lock the new one


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    """The owner of a locked lock file as "pid N"; a new owner writes its pid just after locking."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        data = os.pread(fd, 32, 0).strip()
        if data.isdigit() and _alive(int(data)):
            return f"pid {int(data)}"
        if time.monotonic() > deadline:
            return "pid unknown"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # alive, but another user's
    return True
