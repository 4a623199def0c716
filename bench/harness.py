"""Shared benchmark plumbing: the loopback endpoint in its own process, the real CLI in a measured child process, the
code under test ("after" = this repository, "before" = a checkout of an older commit), the machine and its load.

The measuring process never imports the pipeline: every pipeline figure is `python -m daydream_luigi run` in a child
process (reaped with os.wait4, which returns that child's own wall time, CPU and peak RSS), against
`tests/fake_endpoint.py` in another child process, whose `/_timeline` gives every call's received and answered times
on the endpoint's clock.
"""

import collections
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# /var/tmp rather than /tmp: test suites create and delete thousands of files under /tmp all the time, and on ext4
# without a journal (this machine) every new file then pays a scan past recently freed inodes in the same block group.
BENCH_ROOT = Path(os.environ.get("DAYDREAM_BENCH_ROOT", "/var/tmp/daydream-bench"))
CHECKOUTS = BENCH_ROOT.with_name(BENCH_ROOT.name + "-code")  # kept between runs: extracted once per commit
BEFORE = "c67a468"  # the last commit before the execution model of issue 9


@dataclass(frozen=True)
class Code:
    """The pipeline a measurement runs: `root` holds its daydream_luigi package and its shipped config/."""

    label: str  # "before" or "after"
    root: Path


def after() -> Code:
    return Code("after", REPO)


def before(commit: str = BEFORE) -> Code:
    """The tree of `commit` (git archive of this repository), extracted once under CHECKOUTS; or, when `commit` is a
    folder holding a daydream_luigi package (another checkout), that folder as it is."""
    if (Path(commit) / "daydream_luigi").is_dir():
        return Code(f"before ({commit})", Path(commit).resolve())
    target = CHECKOUTS / commit
    if not (target / "daydream_luigi").is_dir():
        CHECKOUTS.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{commit}-", dir=CHECKOUTS))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(target)
    return Code(f"before ({commit})", target)


class Endpoint:
    """`tests/fake_endpoint.py` in a child process, one per measured run (a fresh timeline, and for a lognormal
    latency the same seeded sequence of latencies, drawn in the order requests arrive)."""

    def __init__(self, latency: float = 0.0, sigma: float = 0.0, seed: int = 0, cap: float | None = None):
        self.args = ["--latency", str(latency), "--latency-sigma", str(sigma), "--seed", str(seed)]
        self.args += [] if cap is None else ["--latency-cap", str(cap)]
        self.process = None
        self.base_url = ""

    def __enter__(self) -> "Endpoint":
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "fake_endpoint.py"), "--port", "0", "--no-record", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"fake endpoint did not start (printed {self.base_url!r})")
        return self

    def _get(self, route: str):
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + route, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._get("/_stats")

    def timeline(self) -> list[tuple[float, float, str]]:
        """(received, answered, "judge" | "text") of every answered chat request, endpoint clock."""
        return [tuple(entry) for entry in self._get("/_timeline")]

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Measured:
    started_at: float  # time.time() when it was started (the endpoint's clock: the same machine)
    wall_s: float
    cpu_s: float  # user + system, of the run and of every task process it forked and reaped
    maxrss_mb: float  # the largest RSS of the run's process (or of one of its reaped children)
    returncode: int
    stdout: str
    stderr: str


def project_env(root: Path, base_url: str, code: Code) -> dict:
    env = {
        **os.environ,
        "DAYDREAM_DATA_ROOT": str(root / "data"),
        "DAYDREAM_CONFIG_DIR": str(root / "config"),
        "DAYDREAM_LLM_BASE_URL": base_url,
        "OPENROUTER_API_KEY": "bench-key",
        "PYTHONPATH": str(code.root),
    }
    for name in ("LUIGI_CONFIG_PATH", "DAYDREAM_BACKEND", "DAYDREAM_RUN_ID", "GEN_TEMPLATES_ROOT"):
        env.pop(name, None)
    return env


def measure(
    cmd: list[str], env: dict, cwd: Path, stop_when=None, poll_s: float = 0.1, stop_timeout_s: float = 60.0
) -> Measured:
    """Run `cmd` in its own session to completion: its wall time, CPU and peak RSS (that child only, via wait4).

    `stop_when()` (optional) is polled every `poll_s` while it runs; once it returns true the child gets SIGTERM (the
    run's own graceful stop), and its process group SIGKILL if it is still there `stop_timeout_s` later."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started_at, start = time.time(), time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        stopped_at = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG if stop_when else 0)
            if pid:
                break
            if stopped_at is None and stop_when():
                os.kill(process.pid, signal.SIGTERM)
                stopped_at = time.perf_counter()
            elif stopped_at is not None and time.perf_counter() - stopped_at > stop_timeout_s:
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            started_at,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            process.returncode,
            out.read(),
            err.read(),
        )


def daydream(code: Code, root: Path, endpoint: Endpoint, *args: str, stop_when=None, ok=(0,)) -> Measured:
    """`daydream <args>` (the real CLI of `code`) in the project at `root`; exits loudly when it did not end well."""
    result = measure(
        [sys.executable, "-m", "daydream_luigi", *args], project_env(root, endpoint.base_url, code), root, stop_when
    )
    if result.returncode not in ok:
        sys.exit(
            f"{code.label}: daydream {' '.join(args)} in {root} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def run_dir(name: str) -> Path:
    """A new, never-used folder for one measured run: deleting a big store right before a timed run makes this file
    system scan past the freed inodes on every file it then creates, which would be charged to the pipeline."""
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BENCH_ROOT))


def discard_stores() -> Path | None:
    """Move the stores aside and delete them in a detached, low-priority `rm` (returns the folder being deleted).

    Deleting is slow here: this file system is mounted with `discard`, so freeing the blocks of the ~100,000s of
    files a full run writes takes many minutes; the results are printed first and nobody waits for it."""
    if not BENCH_ROOT.exists():
        return None
    trash = BENCH_ROOT.with_name(f"{BENCH_ROOT.name}-trash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    BENCH_ROOT.rename(trash)
    _delete_detached(trash)
    return trash


def wait_for_discarded(log) -> None:
    """Before measuring: wait until earlier runs' stores are gone (files deleted during a measurement would be
    charged to it), deleting them ourselves in case their `rm` did not survive; a left-over bench root is moved aside
    and deleted too."""
    if BENCH_ROOT.exists():
        discard_stores()
    pending = sorted(BENCH_ROOT.parent.glob(f"{BENCH_ROOT.name}-trash-*"))
    if not pending:
        return
    log(f"waiting for {len(pending)} earlier store folder(s) to be deleted ({', '.join(map(str, pending))})")
    for trash in pending:
        _delete_detached(trash)
    while any(trash.exists() for trash in pending):
        time.sleep(2)


def _delete_detached(folder: Path) -> None:
    command = ["nice", "-n", "19", "rm", "-rf", str(folder)]
    if shutil.which("ionice"):
        command = ["ionice", "-c", "3", *command]
    subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def span(timeline: list) -> float:
    """First request received to last answer sent."""
    return max(answered for _, answered, _ in timeline) - min(received for received, _, _ in timeline)


def first_judgment(timeline: list) -> float | None:
    """First request received to the first judge answer sent (None: no evaluation was answered)."""
    judged = [answered for _, answered, kind in timeline if kind == "judge"]
    return min(judged) - min(received for received, _, _ in timeline) if judged else None


def handovers(timeline: list) -> list[float]:
    """For every request that took a slot an answer had freed: seconds from that answer to the request. A pool kept
    full hands its slots over in this time, whatever order the work is taken in; a slot that frees when nothing is
    left to send is not counted (a slot the rule leaves idle a while is, as one long hand-over)."""
    events = sorted([(answered, 0) for _, answered, _ in timeline] + [(received, 1) for received, _, _ in timeline])
    free, gaps = collections.deque(), []
    for at, is_request in events:
        if not is_request:
            free.append(at)
        elif free:
            gaps.append(at - free.popleft())
    return gaps


def busy(timeline: list) -> float:
    """Seconds of calls in flight at the endpoint, summed over calls."""
    return sum(answered - received for received, answered, _ in timeline)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = subprocess.run(
        [sys.executable, "-c", "import luigi, pandas; print(luigi.__version__, pandas.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "luigi": versions[0] if versions else "?",
        "pandas": versions[1] if len(versions) > 1 else "?",
        "kernel": platform.release(),
        "load_at_start": load(),
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
