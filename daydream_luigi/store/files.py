"""The generation store: data/gens/<stage>/<gen_id>/ with atomic, write-once files.

A generation is complete exactly when metadata.json exists; it is always the last file written. attempts.jsonl is the
one append-only file: a line before every request is sent and a line for its outcome, tagged with the run that made it,
so the store adds up to what the provider received whatever became of the generation.
"""

import json
import os
import random
from contextlib import contextmanager
from pathlib import Path

from daydream_luigi.core.ids import checked_id
from daydream_luigi.store.locks import exclusive_lock

PROMPT, RAW, CALL, PARSED, METADATA, ERROR = (
    "prompt.txt",
    "raw.txt",
    "call.json",
    "parsed.txt",
    "metadata.json",
    "error.json",
)
ATTEMPTS = "attempts.jsonl"
REASONING = "reasoning.txt"  # a reasoning model's thinking, beside raw.txt and never read as the answer
LOCK = ".lock"  # held while a process works on the generation (see generation_lock)


def gen_dir(gens_root: Path, stage: str, gen_id: str) -> Path:
    return gens_root / stage / checked_id(gen_id, "gen_id")


FSYNC = os.environ.get("DAYDREAM_FSYNC", "0") == "1"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


_random = random.Random()  # temp-file names only; O_EXCL makes a clash harmless
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temp(directory: str, name: str) -> tuple[int, str]:
    """A new temp file .<name>.<random>.tmp in `directory` (created if missing), opened for writing."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{_random.getrandbits(48):012x}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, _FILE_MODE), tmp
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
        except FileExistsError:
            pass
    raise FileExistsError(f"no free temp-file name for {name} in {directory}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + rename, so no reader or crashed run ever sees half a file.

    Rename is atomic against a killed process; set DAYDREAM_FSYNC=1 to also survive power loss (about 3 ms more per
    file on this machine's disk). Plain os calls: this runs 5 times per generation, and tempfile + a text wrapper +
    an unconditional mkdir cost ~0.1 ms each time.
    """
    directory, name = os.path.split(os.fspath(path))
    data = text.encode("utf-8")
    fd, tmp = _create_temp(directory, name)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def append_line(path: Path, record: dict) -> None:
    """One JSON line appended with a single write(2) on an O_APPEND descriptor: concurrent writers never interleave
    within a line, and a crash leaves at worst a last line without its newline, which `read_lines` skips."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)
    try:
        os.write(fd, data)
        if FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict]:
    """The records of an append-only JSON-lines file; a torn last line (a killed writer) is ignored."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        return []
    records = []
    for line in text.split("\n"):
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def read_text(path: Path) -> str:
    """Path.read_text(encoding="utf-8") (universal newlines included) in 4 system calls instead of 7: the stages read
    a few small files per generation, and on a busy host each call also hands the GIL to another thread."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_json(path: Path) -> dict:
    return json.loads(read_text(path))


def remove_stale_temps(directory: Path) -> None:
    """Delete temp files a killed run left behind (.<name>.<random>.tmp from atomic_write_text).

    Call only while holding the generation's lock: no live writer can then own a temp file in this folder.
    """
    with os.scandir(directory) as entries:
        stale = [
            entry.path
            for entry in entries
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and len(entry.name) > 4
        ]
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def complete_ids(gens_root: Path, stage: str) -> set[str]:
    """All complete gen_ids of a stage, in one directory scan (fast completion checks for big cohorts)."""
    root = gens_root / stage
    if not root.is_dir():
        return set()
    return {entry.name for entry in os.scandir(root) if os.path.exists(os.path.join(entry.path, METADATA))}


@contextmanager
def generation_lock(directory: Path):
    """Exclusive per-generation lock: two runs of the same cohort never call the model twice for one generation."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        pass
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(directory / LOCK):
        yield
