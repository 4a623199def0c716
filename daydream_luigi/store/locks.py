"""Exclusive file locks (``flock``): how the processes of a run, and the machines sharing a data folder, take turns
with a generation, a state file, a call slot or a file being assembled.

A lock is released explicitly, never by closing the descriptor alone: a task process Luigi forks while the lock is
held shares the open file, so closing ours would leave the lock held until that process ends. What ``flock``
promises across machines (NFS) is said in ``shared_state``.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock(fd: int) -> None:
    """Wait until this process holds the exclusive lock of the open file `fd`."""
    fcntl.flock(fd, fcntl.LOCK_EX)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock of `fd` if nobody holds it; False (at once) when someone does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def held(fd: int) -> Iterator[None]:
    """Hold the exclusive lock of the open file `fd` for the block."""
    lock(fd)
    try:
        yield
    finally:
        unlock(fd)


@contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold the lock file `path` (created when missing) for the block. With `wait` false, BlockingIOError at once
    when another process holds it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if wait:
            lock(fd)
        elif not try_lock(fd):
            raise BlockingIOError(f"{path} is locked by another process")
        try:
            yield
        finally:
            unlock(fd)
    finally:
        os.close(fd)
