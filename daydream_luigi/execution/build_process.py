"""Luigi's builds in a small process of their own, which Luigi forks every task process from.

Luigi's stock worker forks a task process per generation from the process that calls `luigi.build`. Forked from the
CLI's process (click, rich, pandas, the display, the plan: 159-344 MB), each fork copies page tables and write-protects
that whole heap again, and the task process faults on every page it touches and tears the address space down when it
ends: about 50 ms of CPU per generation, most of it system time (measured in BENCHMARKS.md, "Wide pools"). So the
runner (`runner.Watch`) starts this module as a new interpreter (`python -m`, about 42 MB: Luigi and the task modules,
never the CLI's imports) and asks it for each build; the CLI's process keeps the display, the monitor's pipe and the
signals.

Protocol: the run's process writes one JSON line per request on this process's stdin (the first says how to set up:
the knobs, the log file, the monitor's pipe, the pools; then one per build: its tasks by family and parameters, as
luigid names them, and the worker count) and reads one JSON line per build back (Luigi's status code). Signals: the
terminal's Ctrl-C reaches the whole process group, so this process ignores SIGINT (the run's process decides);
SIGUSR1 (a first Ctrl-C or SIGTERM of the run) makes Luigi's worker stop asking for work and finish what runs; SIGTERM
(a second one) abandons the builds: Luigi's worker ends its task processes as it unwinds. A task process forked from
here ignores SIGINT (its call finishes and its answer is kept) and dies of SIGTERM (Luigi's worker timeout). When the
run's process dies (SIGKILL), this one stops asking for work as after SIGUSR1, and ends after the calls in flight.
"""

import functools
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import luigi
import luigi.task_register

from daydream_luigi.core.settings import Paths, pool_limits
from daydream_luigi.execution import generation, knobs, plans, slots
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.execution.local_scheduler import WorkerSchedulerFactory

ABANDONED = 130  # this process's exit code when its builds were abandoned


def log_into(path) -> None:
    """Everything Luigi and the pipeline log (INFO and up, tracebacks included) goes to this file only."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")  # keep Luigi off the terminal
    for name in ("luigi", "luigi-interface"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = True
        for old in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(old)


class BuildProcess:
    """The run's side: starts the build process, hands it builds, tells it to stop or abandon."""

    def __init__(self, paths: Paths, run: Knobs, log_path, channel: int, scheduler_url: str | None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(channel,),
            text=True,
        )
        resources = slots.resources(pool_limits(paths)) if run.call_slots else None
        setup = {
            "knobs": asdict(run),
            "log_path": str(log_path),
            "channel": channel,
            "scheduler_url": scheduler_url,
            "resources": resources,
        }
        self._send(setup)

    def _send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def build(self, graph: list, workers: int) -> str:
        """Build `graph` there; Luigi's status code (a `LuigiStatusCode` name)."""
        self._send({"tasks": [[task.get_task_family(), task.to_str_params()] for task in graph], "workers": workers})
        assert self.process.stdout is not None
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the build process ended (exit code {self.process.wait()}); see the run's log")
        answer = json.loads(reply)
        if "error" in answer:
            raise RuntimeError(f"the build failed: {answer['error']}; see the run's log")
        return answer["status"]

    def stop_asking(self) -> None:
        """Luigi's worker there stops asking for work and lets what runs finish."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    def close(self, abandon: bool = False) -> None:
        """Ends it: after its build (stdin closed), or at once with its calls in flight abandoned."""
        if abandon and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait()


_stopping = False  # SIGUSR1 came outside a build: the next worker asks for no work


class _Factory(WorkerSchedulerFactory):
    """The pruned local scheduler and Luigi's stock worker, told at once of a stop that came before it existed."""

    def create_worker(self, scheduler, worker_processes, assistant=False):
        worker = super().create_worker(scheduler, worker_processes, assistant)
        if _stopping:
            worker.handle_interrupt(signal.SIGUSR1, None)
        return worker


def _stop_asking(signum, frame) -> None:
    """SIGUSR1 outside a build (Luigi's worker has its own handler while it builds): the next worker stops at once."""
    global _stopping
    _stopping = True


def _signals() -> None:
    serving, parent = os.getpid(), os.getppid()

    def abandon(signum, frame) -> None:
        if os.getpid() != serving:  # a task process forked by Luigi: die as SIGTERM would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    def orphaned() -> None:  # the run's process died (SIGKILL): stop asking for work, as after a first Ctrl-C
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(serving, signal.SIGUSR1)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, abandon)
    signal.signal(signal.SIGUSR1, _stop_asking)
    threading.Thread(target=orphaned, name="daydream-orphaned", daemon=True).start()


def _task(family: str, params: dict) -> luigi.Task:
    return luigi.task_register.Register.get_task_cls(family).from_str_params(params)


@functools.cache
def _warm_up(cohort_id: str) -> None:
    """Once per cohort, before the first fork: its plan, its batched chunks (every task looks its own up: O(cohort)
    when not inherited) and what every task process would repeat (`generation.warm_up`) are inherited by all of them."""
    context = plans.cohort_plan(cohort_id).context
    generation.warm_up(context)
    knobs.context_for_run(context)
    plans.batch_chunks(cohort_id, knobs.current().batch)


def serve() -> int:
    """The build process's main: set up from the first line of stdin, then one build per line."""
    from daydream_luigi.execution import monitor  # the task classes' event handlers write to the run's pipe
    from daydream_luigi.execution.luigi_config import configure_luigi

    _signals()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed goes where errors go, never into the replies
    setup = json.loads(sys.stdin.readline())
    configure_luigi(Paths.from_env())
    log_into(setup["log_path"])
    factory = _Factory(setup["resources"])
    options = {"scheduler_url": setup["scheduler_url"]} if setup["scheduler_url"] else {"local_scheduler": True}
    try:
        relay = monitor.Listening(monitor.Relay(setup["channel"]))
        with knobs.applied(Knobs(**setup["knobs"])), monitor.events_reported(), relay:
            for line in sys.stdin:
                request = json.loads(line)
                try:
                    graph = [_task(family, params) for family, params in request["tasks"]]
                    for cohort_id in {task.param_kwargs.get("cohort_id") for task in graph} - {None}:
                        _warm_up(cohort_id)
                    result = luigi.build(graph, factory, workers=request["workers"], detailed_summary=True, **options)
                    reply = {"status": result.status.name}
                except Exception as exc:
                    logging.getLogger("daydream").exception("a build failed")
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    luigi.task_register.Register.clear_instance_cache()  # Luigi keeps every instance; parts add up
                    relay.caught_up()  # every event of the build is in the run's pipe before the reply
                    signal.signal(signal.SIGUSR1, _stop_asking)
                replies.write(json.dumps(reply) + "\n")
                replies.flush()
    except KeyboardInterrupt:
        return ABANDONED
    finally:
        _log_cpu()
    return 0


def _log_cpu() -> None:
    """Where the run's CPU went, in its log: this process (Luigi's scheduler and worker) and its task processes."""
    for who, usage in (
        ("the build process", resource.getrusage(resource.RUSAGE_SELF)),
        ("its task processes", resource.getrusage(resource.RUSAGE_CHILDREN)),
    ):
        logging.getLogger("daydream").info(
            "CPU of %s: user %.2f s, system %.2f s, %d minor page faults",
            who,
            usage.ru_utime,
            usage.ru_stime,
            usage.ru_minflt,
        )


if __name__ == "__main__":
    sys.exit(serve())
