"""Call slots: the next generation of a full pool is forked, rendered and ready before a call ends.

Luigi hands out a pool's resource only when a task process has finished, and then forks the next one: between two
calls of a slot it spends tens of milliseconds (the result travels back, the scheduler is asked, a process is forked
and renders its prompt), time the pool's slot stands idle. `daydream run` (with Luigi's local scheduler) therefore
gives each pool a Luigi resource of its limit plus `ahead(limit)`, and a call holds one of `limit` slot files (an
exclusive `flock` each, in the run's folder) from its first attempt to its answer. The provider never sees more than
the limit at once; the tasks ahead wait for a slot with their prompt ready and send the moment one frees. A killed
task process releases its slot with its file descriptors. With luigid (or the stock `luigi` command) no slots are set
and Luigi's resources alone limit the pools.
"""

import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.store.locks import lock, try_lock, unlock

POLL_S = 0.001  # how often the first waiting task of a pool tries the slots again (the others wait their turn)
STOP_EVERY_S = 0.05  # how often it asks whether the run was asked to stop
FOLDER = "slots"  # in the run's folder (`gate.run_dir`)


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


def _wait_for_turn(turn: int, stop_requested: Callable[[], bool]) -> None:
    """Block until this process holds the pool's turn lock (waiters queue on it in the kernel, so only the holder
    polls the slots); a thread blocks on it while this one asks every STOP_EVERY_S whether the run is stopping."""
    waiter = threading.Thread(target=lock, args=(turn,), daemon=True)
    waiter.start()
    while True:
        waiter.join(STOP_EVERY_S)
        if not waiter.is_alive():
            return
        if stop_requested():
            raise StopRequested()  # the process ends with the task: its descriptors, and a late lock, go with it


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
    slot_files = [os.open(slots.folder / f"{pool}.{k}", os.O_RDWR | os.O_CREAT, 0o644) for k in range(count)]
    opened = list(slot_files)  # closed at the end: that releases the held slot (and the turn)
    try:
        if _try(slot_files) is None:
            on_wait(True)
            try:
                turn = os.open(slots.folder / f"{pool}.turn", os.O_RDWR | os.O_CREAT, 0o644)
                opened.append(turn)
                _wait_for_turn(turn, stop_requested)
                asked = time.monotonic()
                while _try(slot_files) is None:
                    if time.monotonic() - asked >= STOP_EVERY_S:
                        if stop_requested():
                            raise StopRequested()
                        asked = time.monotonic()
                    time.sleep(POLL_S)
                unlock(turn)  # the next waiter polls
            finally:
                on_wait(False)
        yield
    finally:
        for fd in opened:
            os.close(fd)


class StopRequested(Exception):
    """The run was asked to stop while this generation waited for a slot: its call was never sent."""
