"""The one build-and-watch runner: every Luigi build daydream makes (a cohort's graphs in `cohort_run`, a tournament's
rounds in `tournament`) goes through `Watch.build`, so all of them get the same scheduler, call slots, progress, stop
handling and log file.

A build runs on Luigi's local scheduler, pruned on a timer as luigid is (`local_scheduler`), or on luigid. Luigi's stock
worker runs every generation in a forked task process, so its worker timeout, retry policy and events hold; the worker
runs in a small process of its own (`build_process`), so that the processes it forks do not copy this one; the events
feed a `monitor.Monitor` that the progress display (`progress`) shows. With the local scheduler each pool's calls hold
call slots (`slots`), so the next task of a full pool is forked and ready before a call ends. Ctrl-C or SIGTERM asks
Luigi's worker to stop asking for work (SIGUSR1 to the build process) and lets the calls in flight finish, so every
answer already paid for is kept (batch polls and tasks waiting for a call slot stop: see `gate.request_stop`); a second
Ctrl-C abandons them. Luigi's log, tracebacks included, goes to a file under the data folder.
"""

import shutil
import signal
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import luigi
import requests
from luigi.execution_summary import LuigiStatusCode

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.settings import STAGES, Paths, luigi_config_file, pool_limits
from daydream_luigi.execution import knobs, slots
from daydream_luigi.execution.build_process import BuildProcess, log_into
from daydream_luigi.execution.generation import call_time_limit
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.execution.monitor import Listening, Monitor
from daydream_luigi.execution.progress import Display
from daydream_luigi.providers.limits import gate
from daydream_luigi.providers.limits.ratelimit import RateLimiter

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QUOTA = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
_SCHEDULING_FAILED = {LuigiStatusCode.SCHEDULING_FAILED.name, LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED.name}


class Stopper:
    """SIGINT / SIGTERM in the run's own process: the first stops new work, the second abandons calls in flight (the
    build process and its task processes ignore the terminal's Ctrl-C: see `build_process`)."""

    def __init__(self, display: Display, on_stop=lambda: None):
        self.display = display
        self.on_stop = on_stop  # told of the first signal: the build process and batch polls stop new work
        self.signal: int | None = None
        self.abandoned = False
        self._previous = {}

    def __enter__(self) -> "Stopper":
        for signum in EXIT_SIGNAL:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            self.abandoned = True
            raise KeyboardInterrupt  # the build process ends its task processes (see `Watch.__exit__`)
        self.signal = signum
        self.display.stopping = True
        self.on_stop()
        self.display.note(
            f"{signal.Signals(signum).name}: no new generation starts; waiting for the calls in flight "
            f"to finish (again to abandon them)"
        )


def check_scheduler(url: str) -> None:
    """A central scheduler that does not answer is one line, not a minute of retries and a traceback."""
    try:
        requests.get(url, timeout=3)
    except requests.RequestException:
        raise InputError(
            f"no Luigi scheduler answers at {url}; start one with `daydream ui` (or `make ui`), or run "
            f"with the local scheduler (drop --scheduler central)"
        ) from None


def check_worker_timeout(paths, settings, stages, with_slots: bool = False) -> None:
    """Luigi's worker timeout must only ever end a hung call, never one still within its retry budget; with call
    slots (`slots`) a task may first wait for a slot about as long as another call takes."""
    timeout = luigi.configuration.get_config().getint("worker", "timeout", 0)
    where = luigi_config_file(paths)
    for stage in [stage for stage in STAGES if stage in stages]:
        limit = call_time_limit(settings, stage)
        if 0 < timeout <= limit * (2 if with_slots else 1):
            bound = (
                (
                    f"twice what one {stage} call may take with its retries (2 x {limit:g} s, since a task may first "
                    f"wait that long for a call slot; {limit:g} s"
                )
                if with_slots
                else f"what one {stage} call may take with its retries ({limit:g} s"
            )
            raise InputError(
                f"{where}: [worker] timeout = {timeout} is not longer than {bound} = max_attempts x "
                f"(connect_timeout + read_timeout) + max_total_seconds in "
                f"config/daydream.yaml); raise the timeout or lower those settings"
            )


def workers_for(paths: Paths, pools: Iterable[str], central: bool = False, shared_by: int = 1) -> int:
    """Luigi workers that keep every given pool full: its limit, plus (with the local scheduler) the tasks that wait
    ahead for a call slot. With `shared_by` run processes on one luigid, each takes its share of every limit (rounded
    up): a process whose task ends asks luigid for the next one at once, while an idle one asks once per wait
    interval, so with workers for the whole pool each would tend to keep the slots it holds."""
    limits = pool_limits(paths)
    return sum(
        -(-limits.get(pool, 1) // shared_by) + (0 if central else slots.ahead(limits.get(pool, 1)))
        for pool in set(pools)
    )


def log_to_file(paths, run_id: str) -> Path:
    """Everything Luigi and the pipeline log (INFO and up, tracebacks included) goes to this run's file only (the
    build process logs into the same file)."""
    folder = paths.data_root / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now():%Y%m%d-%H%M%S}-{run_id}.log"
    log_into(path)
    return path


@contextmanager
def started(paths, run: Knobs) -> Iterator[Path]:
    """A run from its start to its end: its log file (yielded) and its knobs set (`knobs`); at the end its own state
    (breaker, ledger, call slots, stop flag, under `gate.run_dir`) is removed."""
    log_path = log_to_file(paths, run.run_id)
    try:
        with knobs.applied(run):
            yield log_path
    finally:
        shutil.rmtree(gate.run_dir(paths, run.run_id), ignore_errors=True)


class Watch:
    """Luigi builds of a run watched as one, made by one build process (`build_process`): the progress of `monitor`
    (fed by Luigi's events through `Listening`) on the terminal and Ctrl-C / SIGTERM handled by a `Stopper`. With call
    slots (`run.call_slots`, only with Luigi's local scheduler: luigid's resources alone limit the pools) the local
    scheduler lets tasks wait ahead for them."""

    def __init__(
        self,
        paths,
        run: Knobs,
        monitor: Monitor,
        title: str,
        verbosity: int,
        log_path: Path,
        limiter: RateLimiter | None = None,
        scheduler_url: str | None = None,
    ):
        self.paths, self.run, self.monitor, self.log_path = paths, run, monitor, log_path
        self.display = Display(monitor, title, verbosity, limiter=limiter)
        self.scheduler_url = scheduler_url  # None: Luigi's local scheduler
        self.scheduled_ok = True  # Luigi could schedule every task of every build
        self._stack = ExitStack()
        self._abandon = True  # the build process is ended at once unless the builds ended normally

    def __enter__(self) -> "Watch":
        with ExitStack() as stack:
            stack.enter_context(self.display)
            self.listening = stack.enter_context(Listening(self.monitor))
            self.builds = BuildProcess(self.paths, self.run, self.log_path, self.listening.channel, self.scheduler_url)
            stack.callback(lambda: self.builds.close(abandon=self._abandon))  # before the pipe closes
            self.stopper = stack.enter_context(Stopper(self.display, self._stop))
            self._stack = stack.pop_all()
        return self

    def _stop(self) -> None:
        gate.request_stop(self.paths, self.run.run_id)
        self.builds.stop_asking()

    def __exit__(self, exc_type, exc, tb) -> bool:
        """A second Ctrl-C (KeyboardInterrupt) ends the builds: the calls in flight are abandoned."""
        abandoned = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if abandoned:
            self.stopper.abandoned = True
        self._abandon = exc_type is not None
        self._stack.close()
        return abandoned

    @property
    def stopped(self) -> bool:
        return self.stopper.signal is not None

    def build(self, graph: list, workers: int) -> None:
        """Build `graph` (in the build process, the only `luigi.build` of daydream)."""
        self.scheduled_ok &= self.builds.build(graph, workers) not in _SCHEDULING_FAILED
