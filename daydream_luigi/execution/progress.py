"""The run's progress on the terminal: a live table (rich) on a TTY, a status line every few seconds otherwise.

Each failure is printed once, on its own line with its reason, as soon as it is known, and so is each closed gate's
message and each change of a batch's status; the table shows per stage and pool what is done, running, queued,
failed, waiting for a batch and stopped by a gate, with the pool's request rate in force (lowered after 429s, or
paused), answers, tokens, cost so far, rate and ETA.
"""

import sys
import threading
import time
from datetime import datetime

from rich.console import Console
from rich.live import Live
from rich.table import Table

from daydream_luigi.execution.monitor import Monitor
from daydream_luigi.providers.limits.ratelimit import PoolStatus, RateLimiter

STATUS_EVERY_S = 5.0


def rate_text(status: PoolStatus) -> str:
    """A pool's request rate in force: its configured rate, a lower one while it recovers from 429s, or its pause."""
    if status.paused is not None:
        return f"paused until {datetime.fromtimestamp(status.paused[0]):%H:%M}"
    effective, configured = status.effective_per_window, status.configured_per_window
    if effective is None:
        return "no limit"
    if configured is None or effective < configured:
        return f"{effective:.1f}/min (lowered after 429s" + (f", configured {configured}/min)" if configured else ")")
    return f"{configured}/min"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def totals_line(snap: dict, stopping: bool = False) -> str:
    """After a stop request no new generation starts, so the ETA says what is still in flight instead."""
    running = sum(row.running for row in snap["rows"].values())
    ahead = f"stopping: {running} in flight" if stopping else f"ETA {_duration(snap['eta'])}"
    return (
        f"answers {snap['answers']} of {snap['requests']} requests, tokens {snap['prompt_tokens']:,} + "
        f"{snap['completion_tokens']:,}, cost ${snap['cost']:.4f}, {snap['rate']:.1f} generations/min, "
        f"elapsed {_duration(snap['elapsed'])}, {ahead}"
    )


def status_line(snap: dict, pools: dict | None = None, stopping: bool = False) -> str:
    """`pools`: pool -> PoolStatus, for the pools whose rate is limited."""
    rows = snap["rows"].values()
    done = sum(r.done + r.done_before for r in rows)
    total = sum(r.total for r in rows)
    running = sum(r.running for r in rows)
    failed = sum(r.failed for r in rows)
    waiting = "".join(
        f", {n} {what}"
        for n, what in ((sum(r.batched for r in rows), "in batches"), (sum(r.stopped for r in rows), "stopped"))
        if n
    )
    rates = "".join(
        f"; pool {pool} {rate_text(status)}"
        for pool, status in sorted((pools or {}).items())
        if rate_text(status) != "no limit"
    )
    return f"{done}/{total} done, {running} running, {failed} failed{waiting}; {totals_line(snap, stopping)}{rates}"


def table(snap: dict, title: str, pools: dict | None = None, stopping: bool = False) -> Table:
    view = Table(title=title, caption=totals_line(snap, stopping), expand=False)
    for column in ("stage", "pool", "done", "running", "queued", "failed", "total", "in batch", "stopped", "pool rate"):
        view.add_column(column, justify="left" if column in ("stage", "pool", "pool rate") else "right")
    for (stage, pool), row in snap["rows"].items():
        status = (pools or {}).get(pool)
        view.add_row(
            stage,
            pool,
            str(row.done + row.done_before),
            str(row.running),
            str(row.queued),
            f"[red]{row.failed}[/red]" if row.failed else "0",
            str(row.total),
            str(row.batched),
            str(row.stopped),
            rate_text(status) if status else "",
        )
    return view


class Display:
    """Renders a Monitor until closed. verbosity 0 = quiet (failures only at the end), 1 = normal, 2 = also a line per
    generation as it finishes. `stopping` is set once a stop was requested."""

    def __init__(
        self, monitor: Monitor, title: str, verbosity: int = 1, stream=None, limiter: RateLimiter | None = None
    ):
        self.monitor = monitor
        self.limiter = limiter  # the pools' rates in force are read from it
        self.title = title
        self.verbosity = verbosity
        self.stopping = False
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        self.tty = self.console.is_terminal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="daydream-display", daemon=True)
        self._live: Live | None = None

    def __enter__(self) -> "Display":
        if self.verbosity > 0:
            if self.tty:
                self._live = Live(
                    table(self.monitor.snapshot(), self.title, self._pools()),
                    console=self.console,
                    refresh_per_second=4,
                    transient=False,
                )
                self._live.start()
            self._thread.start()
        return self

    def note(self, text: str) -> None:
        """A line above the live table (or a plain line without one)."""
        if self.verbosity > 0:
            (self._live.console if self._live else self.console).print(
                text, highlight=False, markup=False, soft_wrap=True
            )

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._render(final=True)
        if self._live is not None:
            self._live.stop()

    def _loop(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(0.25):
            if self.tty or time.monotonic() - last_status >= STATUS_EVERY_S:
                self._render()
                last_status = time.monotonic()

    def _pools(self) -> dict:
        if self.limiter is None:
            return {}
        return {
            pool: self.limiter.status(pool) for pool in sorted({pool for _, pool in self.monitor.rows}) if pool != "-"
        }

    def _render(self, final: bool = False) -> None:
        if self.verbosity == 0:
            return
        snap = self.monitor.snapshot()
        for stage, gen_id, reason in snap["new_failures"]:
            self.note(f"failed {stage} {gen_id}: {reason}")
        for line in snap["new_notes"]:
            self.note(line)
        if self.verbosity > 1:
            for stage, pool, gen_id in snap["new_finished"]:
                self.note(f"done {stage} {gen_id}" + (f" (pool {pool})" if pool != "-" else ""))
        if self._live is not None:
            self._live.update(table(snap, self.title, self._pools(), self.stopping))
        elif not final:
            self.note(status_line(snap, self._pools(), self.stopping))
