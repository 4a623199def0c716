"""Small JSON state files shared by every worker process (and every machine) that uses one data folder.

Rate limits, quota pauses, circuit breakers and the spending ledger must hold across Luigi's forked worker processes
and across machines that share the data folder, so their state lives in files, not in memory. Each file is read,
changed and written in place while an exclusive ``flock`` is held on it. In place, not by renaming a new file over
it: on NFS another client may keep reading a renamed-away file through its cached directory entry, while a lock on
the file itself makes the client drop its cached data. The new content is written before the old tail is cut off,
and reading takes the first JSON object, so a process killed between the two leaves a readable file.

What this assumes of the file system: ``flock`` excludes every process that locks the same file. That holds on a
local disk, and on NFS where Linux turns ``flock`` into an NFS lock (NFSv4, or NFSv3 with lockd; not with the
``nolock`` or ``local_lock=flock`` mount options). Synced folders (Dropbox, sshfs, ...) give no such guarantee: give
each machine its own data folder there. File modification times are never used, so a file server's clock plays no
part.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daydream_luigi.core.errors import InputError
from daydream_luigi.store.locks import held

# POSIX locks (what flock becomes on NFS) do not exclude threads of one process from each other; this does.
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _fresh_locks_after_fork() -> None:
    """Luigi forks a task process while another thread of the run (the progress display) may hold one of these
    locks: the copy would stay held forever in the child, and its first lookup of that file would deadlock."""
    global _thread_locks, _thread_locks_guard
    _thread_locks, _thread_locks_guard = {}, threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_after_fork)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def state_file(directory: Path, name: str) -> Path:
    """``directory/<name>.json`` for a pool, provider or ledger name that is safe as a file name."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a state file: use letters, digits, '.', '_' and '-'")
    return Path(directory) / f"{name}.json"


@functools.lru_cache(maxsize=1024)
def _resolved(path: str) -> str:
    """The file's real path, worked out once per process (a state file is locked several times per call, and
    resolving walks every folder of the path)."""
    return str(Path(path).resolve())


def _thread_lock(path: Path) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(_resolved(str(path)), threading.Lock())


@contextmanager
def locked_json(path: Path) -> Iterator[dict]:
    """Yield the file's content as a dict (empty when the file is new) while holding an exclusive lock on it.

    Changes made to the dict are written back when the block ends without an exception; nothing is written when
    the content did not change, so reading costs no write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(path):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not mode "a": appending ignores seek(0)
        with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
            with held(handle.fileno()):  # released explicitly: a task process forked meanwhile shares the file
                yield from _read_change_write(path, handle)


def _read_change_write(path: Path, handle) -> Iterator[dict]:
    """The body of `locked_json`, run while the lock is held."""
    text = handle.read()
    try:
        state = json.JSONDecoder().raw_decode(text.lstrip())[0] if text.strip() else {}
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); delete the file to reset it") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a JSON object; delete the file to reset it")
    before = json.dumps(state, sort_keys=True)
    yield state
    after = json.dumps(state, sort_keys=True)
    if after != before:
        handle.seek(0)
        handle.write(after)  # ASCII (json.dumps escapes the rest), so characters are bytes
        handle.flush()
        handle.truncate(len(after))
