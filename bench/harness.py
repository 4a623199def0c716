"""Shared benchmark plumbing: the loopback endpoint in its own process, timed and memory-measured CLI runs, the machine.

Every measured command runs as a child process and is reaped with os.wait4, which returns that child's own resource
usage: wall time, user/system CPU and peak RSS (ru_maxrss) of exactly that run (the same figure as
resource.getrusage(RUSAGE_CHILDREN) in a process that ran only it).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# /var/tmp rather than /tmp: test suites create and delete thousands of files under /tmp all the time, and on ext4
# without a journal (this machine) every new file then pays a scan past recently freed inodes in the same block group.
BENCH_ROOT = Path(os.environ.get("DAYDREAM_BENCH_ROOT", "/var/tmp/daydream-bench"))
# Another checkout whose daydream_luigi the measured pipeline runs (before/after comparisons); the endpoint, the
# baseline and the synthetic stores always come from this one.
CODE = os.environ.get("DAYDREAM_BENCH_CODE")


class EndpointProcess:
    """`tests/fake_endpoint.py` in a child process (so its CPU is not in the measured process's GIL)."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.process = None
        self.base_url = ""

    def __enter__(self) -> "EndpointProcess":
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "fake_endpoint.py"), "--port", "0", "--latency", str(self.latency),
             "--no-record"], stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"fake endpoint did not start (printed {self.base_url!r})")
        return self

    def stats(self) -> dict:
        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(root + "/_stats", timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """User + system CPU the endpoint process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Measured:
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def measure(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> Measured:
    """Run `cmd` to completion; its wall time, CPU and peak RSS (of that child only, via wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, process.returncode, out.read(),
                        err.read())


def project_env(root: Path, base_url: str) -> dict:
    env = {**os.environ, "DAYDREAM_DATA_ROOT": str(root / "data"), "DAYDREAM_CONFIG_DIR": str(root / "config"),
           "DAYDREAM_LLM_BASE_URL": base_url, "OPENROUTER_API_KEY": "bench"}
    env.pop("LUIGI_CONFIG_PATH", None)
    if CODE:
        env["PYTHONPATH"] = CODE
    return env


def daydream(root: Path, base_url: str, *args: str) -> Measured:
    """`daydream run ...` (the real CLI) in the project at `root`; fails loudly when the run is not clean."""
    result = measure([sys.executable, "-m", "daydream_luigi", *args], env=project_env(root, base_url), cwd=root)
    if result.returncode != 0:
        sys.exit(f"daydream {' '.join(args)} in {root} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                 f"{result.stderr[-3000:]}")
    return result


def model_calls(stdout: str) -> int:
    """The `model calls N,` the run summary prints."""
    for line in stdout.splitlines():
        if line.startswith("model calls "):
            return int(line.split()[2].rstrip(","))
    raise ValueError("no 'model calls' line in the run output")


def run_dir(name: str) -> Path:
    """A new, never-used folder for one measured run (see project.make_project on why not to reuse one)."""
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BENCH_ROOT))


def parser_for(doc: str, workers: bool = True) -> argparse.ArgumentParser:
    """The options every standalone bench script shares."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if workers:
        parser.add_argument("--workers", type=int, default=8)
        parser.add_argument("--window", type=int, help="scheduling.window (default: the repository's config)")
    parser.add_argument("--keep", action="store_true", help="keep the stores (default: delete them at the end)")
    return parser


def run_then_clean(keep: bool, run) -> None:
    """Run a benchmark; delete its stores afterwards unless asked to keep them."""
    try:
        run()
    finally:
        if not keep:
            clean()


def clean() -> None:
    shutil.rmtree(BENCH_ROOT, ignore_errors=True)


def summarize(values: list[float]) -> dict:
    return {"best": min(values), "median": statistics.median(values), "all": values}


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    filesystem = ""
    try:
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(BENCH_ROOT).startswith(mount) and len(mount) >= len(best):
                best, filesystem = mount, f"{kind} on {device} ({mount})"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1), "python": platform.python_version(),
            "kernel": platform.release(), "bench_filesystem": filesystem, "load_at_start": os.getloadavg()}
