"""Call slots: the next generation of a full pool is forked, rendered and ready before a call ends.

Luigi hands out a pool's resource only when a task process has finished, and then forks the next one: between two
calls of a slot it spends tens of milliseconds (the result travels back, the scheduler is asked, a process is forked
and renders its prompt), time the pool's slot stands idle. `daydream run` (with Luigi's local scheduler) therefore
gives each pool a Luigi resource of its limit plus `ahead(limit)`, and a call holds one of `limit` slot files (an
exclusive `flock` each, in the run's folder) from its first attempt to its answer. The provider never sees more than
the limit at once; the tasks ahead wait for a slot with their prompt ready and send the moment one frees. A killed
task process releases its slot with its file descriptors. With luigid (or the stock `luigi` command) no slots are set
and Luigi's resources alone limit the pools.

What a call costs does not grow with the pool: a call tries the slots from a place of its own (its process id) and
opens only the files it tries until one is free; of the tasks waiting, only the one holding the pool's turn looks at
the slots, and it looks again when a call that held a slot says it ended (a byte in the pool's FIFO, `FREED`), not on a
timer. A call killed before it could say so is noticed within STOP_EVERY_S.
"""

import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.store.locks import lock, try_lock, unlock

STOP_EVERY_S = 0.05  # how often the waiting task asks whether the run was asked to stop (and tries the slots again)
FOLDER = "slots"  # in the run's folder (`gate.run_dir`)
FREED = "{pool}.freed"  # the pool's FIFO: a byte for every slot released


@dataclass(frozen=True)
class CallSlots:
    """A run's call slots: `limits[pool]` slot files of each pool, in `folder`."""

    folder: Path
    limits: Mapping[str, int]


def ahead(limit: int) -> int:
    """How many task processes of a pool may wait with their prompt ready: one per two slots, at least one."""
    return max(1, limit // 2)


def resources(limits: Mapping[str, int]) -> dict[str, int]:
    """The Luigi resources of pools with these limits that let tasks wait ahead for a slot."""
    return {pool: limit + ahead(limit) for pool, limit in limits.items()}


def _try(handles: list[int]) -> int | None:
    for fd in handles:
        if try_lock(fd):
            return fd
    return None


def _first_free(slots: CallSlots, pool: str, count: int, opened: list[int]) -> int | None:
    """The first slot free, trying from a place of this process's own; every slot file it opened is in `opened`."""
    start = os.getpid() % count
    for k in range(count):
        fd = os.open(slots.folder / f"{pool}.{(start + k) % count}", os.O_RDWR | os.O_CREAT, 0o644)
        opened.append(fd)
        if try_lock(fd):
            return fd
    return None


def _wait_for_turn(turn: int, stop_requested: Callable[[], bool]) -> None:
    """Block until this process holds the pool's turn lock (waiters queue on it in the kernel, so only the holder
    looks at the slots); a thread blocks on it while this one asks every STOP_EVERY_S whether the run is stopping."""
    waiter = threading.Thread(target=lock, args=(turn,), daemon=True)
    waiter.start()
    while True:
        waiter.join(STOP_EVERY_S)
        if not waiter.is_alive():
            return
        if stop_requested():
            raise StopRequested()  # the process ends with the task: its descriptors, and a late lock, go with it


def _listen_for_freed(path: Path, opened: list[int]) -> int:
    """The read end of the pool's FIFO (made by the first to need it). This process also holds a write end, so the
    FIFO never reads as ended while the calls that write to it come and go."""
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    read = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    opened.append(read)
    opened.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    return read


def _say_freed(path: Path) -> None:
    """One byte into the pool's FIFO; nobody listening (no reader) or a full FIFO: the waiter tries anyway."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b"\0")
    except OSError:
        pass
    finally:
        os.close(fd)


def _wait_for_a_slot(handles: list[int], freed: int, stop_requested: Callable[[], bool]) -> None:
    """Try the slots whenever a call says it released one, and every STOP_EVERY_S (a killed call says nothing)."""
    asked = time.monotonic()
    while _try(handles) is None:
        select.select([freed], [], [], STOP_EVERY_S)
        try:
            os.read(freed, 4096)
        except BlockingIOError:
            pass
        if time.monotonic() - asked >= STOP_EVERY_S:
            if stop_requested():
                raise StopRequested()
            asked = time.monotonic()


@contextmanager
def call_slot(slots: CallSlots | None, pool: str, stop_requested: Callable[[], bool], on_wait: Callable[[bool], None]):
    """Hold one of the pool's slots for the duration of the block (no-op without slots, or when the pool has none).
    While every slot is taken, waits; `on_wait(True)` / `on_wait(False)` tell when the wait starts and ends. Raises
    StopRequested when the run was asked to stop before a slot was free (nothing was sent)."""
    count = slots.limits.get(pool) if slots else None
    if not count:
        yield
        return
    slots.folder.mkdir(parents=True, exist_ok=True)
    freed = slots.folder / FREED.format(pool=pool)
    opened: list[int] = []  # closed at the end: that releases the held slot (and the turn)
    held = False
    try:
        if _first_free(slots, pool, count, opened) is None:
            on_wait(True)
            try:
                handles = list(opened)
                turn = os.open(slots.folder / f"{pool}.turn", os.O_RDWR | os.O_CREAT, 0o644)
                opened.append(turn)
                _wait_for_turn(turn, stop_requested)
                _wait_for_a_slot(handles, _listen_for_freed(freed, opened), stop_requested)
                unlock(turn)  # the next waiter looks at the slots
            finally:
                on_wait(False)
        held = True
        yield
    finally:
        for fd in opened:
            os.close(fd)
        if held:
            _say_freed(freed)


class StopRequested(Exception):
    """The run was asked to stop while this generation waited for a slot: its call was never sent."""
