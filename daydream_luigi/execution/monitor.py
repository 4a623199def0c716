"""What a run is doing, as Luigi's events tell it: per stage and pool, done / running / queued / in a batch / stopped
/ failed, answers, tokens and cost, rate and ETA, every failure with its reason, each closed gate's one message
(a quota pause, an unreachable provider, the budget) and each batch's status.

Luigi fires START, SUCCESS and FAILURE (and our own `daydream.attempt` and `daydream.answer_lost`) in the task
process it forked for a generation, and TIMEOUT / PROCESS_FAILURE in the worker process. Every handler here writes
one JSON line to a pipe the run opened before building (a single write of at most PIPE_BUF bytes is atomic, so task
processes never interleave and a killed one cannot leave a lock held). The worker runs in the build process
(`build_process`): a thread there relays its pipe to the run's (`Relay`), where a thread reads it into a `Monitor`.
The build process registers the handlers for its builds (`events_reported`); the stock `luigi` command has none.
"""

import json
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import luigi

from daydream_luigi.execution import batching, generation, knobs
from daydream_luigi.execution.generation import ANSWER_LOST, ATTEMPT, SLOT
from daydream_luigi.execution.tasks import STOPPED, BatchPoll, BatchSubmit, Feed, GateClosed, GenerationTask
from daydream_luigi.store.accounting import Calls

_MAX_MESSAGE = 4000  # under PIPE_BUF (4096 on Linux): one os.write is atomic
_channel: int | None = None  # write end of the run's pipe, inherited by every task process Luigi forks


@dataclass
class Row:
    """One (stage, pool) line of the progress display."""

    total: int = 0
    done_before: int = 0  # complete before the run started
    done: int = 0
    running: int = 0
    failed: int = 0
    batched: int = 0  # waiting for a batch's results
    stopped: int = 0  # refused by a closed gate: pending until a later run

    @property
    def queued(self) -> int:
        return max(
            0, self.total - self.done_before - self.done - self.running - self.failed - self.batched - self.stopped
        )


@dataclass
class Monitor:
    """The run's state, fed by `apply` (from the pipe) and read by the display; all access under `lock`."""

    rows: dict = field(default_factory=dict)  # (stage, pool) -> Row
    where: dict = field(default_factory=dict)  # gen_id -> (stage, pool)
    running: set = field(default_factory=set)
    waiting: dict = field(default_factory=dict)  # gen_id -> "batch", "stopped" or "slot" (waiting for a call slot)
    failures: dict = field(default_factory=dict)  # gen_id -> (stage, reason), latest first-class failure
    gates: dict = field(default_factory=dict)  # key -> (kind, name, message) of each closed gate, in order
    batches: dict = field(default_factory=dict)  # batch_id -> its latest status event
    batch_failures: list = field(default_factory=list)  # reasons batch tasks failed
    new_notes: list = field(default_factory=list)  # lines not yet shown (gate messages, batch statuses)
    calls: Calls = field(default_factory=Calls)  # what was sent and paid, counted as the summary counts it
    price_of: dict = field(default_factory=dict)  # gen_id -> its model's Price (None: unknown), for unreported costs
    started: float = field(default_factory=time.monotonic)
    new_failures: list = field(default_factory=list)  # (stage, gen_id, reason) not yet shown
    new_finished: list = field(default_factory=list)  # (stage, pool, gen_id) done in this run, not yet shown
    fed: set = field(default_factory=set)  # (stage, part) of every Feed that ran: parts brought into a graph
    shown: dict = field(default_factory=dict)  # gen_id -> the failure reason last shown
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_members(cls, members, pool_of, complete, price_of=lambda member: None) -> "Monitor":
        """`pool_of(member)` names the pool (or "-" for no call); `complete` is {stage: set of complete gen_ids};
        `price_of(member)` its model's Price, so that the live cost is the summary's (estimates included)."""
        monitor = cls()
        for member in members:
            monitor.price_of[member.gen_id] = price_of(member)
            key = (member.stage, pool_of(member))
            row = monitor.rows.setdefault(key, Row())
            row.total += 1
            if member.gen_id in complete[member.stage]:
                row.done_before += 1
            else:
                monitor.where[member.gen_id] = key
        return monitor

    def apply(self, message: dict) -> None:
        event, gen_id = message["event"], message.get("gen_id")
        with self.lock:
            key = self.where.get(gen_id)
            row = self.rows[key] if key else None
            if event == "start" and row and gen_id not in self.running:
                if gen_id in self.failures:  # a retry
                    del self.failures[gen_id]
                    row.failed -= 1
                self._stop_waiting(gen_id, row)
                self.running.add(gen_id)
                row.running += 1
            elif event in ("waiting", "stopped") and row and gen_id in self.running:
                self.running.discard(gen_id)
                row.running -= 1
                self.waiting[gen_id] = "batch" if event == "waiting" else "stopped"
                if event == "waiting":
                    row.batched += 1
                else:
                    row.stopped += 1
            elif event in ("success", "failure") and row and gen_id in self.running:
                self.running.discard(gen_id)
                row.running -= 1
                if event == "success":
                    row.done += 1
                    self.new_finished.append((*key, gen_id))
                else:
                    row.failed += 1
                    self.failures[gen_id] = (key[0], message["reason"])
                    if self.shown.get(gen_id) != message["reason"]:  # a retry that fails alike is not news
                        self.shown[gen_id] = message["reason"]
                        self.new_failures.append((key[0], gen_id, message["reason"]))
            elif event == "slot" and row:  # waiting for a call slot counts as queued, not running
                if message["waiting"] and gen_id in self.running:
                    self.running.discard(gen_id)
                    row.running -= 1
                    self.waiting[gen_id] = "slot"
                elif not message["waiting"] and self.waiting.get(gen_id) == "slot":
                    del self.waiting[gen_id]
                    self.running.add(gen_id)
                    row.running += 1
            elif event == "attempt":
                self._count_attempt(message)
            elif event == "fed":
                self.fed.add((message["stage"], message["part"]))
            elif event == "gate" and message["key"] not in self.gates:
                self.gates[message["key"]] = (message["kind"], message["name"], message["message"])
                self.new_notes.append(message["message"])
            elif event == "batch":
                self._batch(message)
            elif event == "batch_failed":
                self.batch_failures.append(message["reason"])
                self.new_notes.append(message["reason"])

    def _stop_waiting(self, gen_id: str, row: Row) -> None:
        state = self.waiting.pop(gen_id, None)
        if state == "batch":
            row.batched -= 1
        elif state == "stopped":
            row.stopped -= 1

    def _batch(self, status: dict) -> None:
        batch_id = status["batch_id"]
        if self.batches.get(batch_id, {}).get("status") != status["status"]:
            self.new_notes.append(batch_line(status))
        self.batches[batch_id] = status

    def _count_attempt(self, record: dict) -> None:
        self.calls.add({**record, "event": record["kind"]}, self.price_of.get(record.get("gen_id")))

    def snapshot(self) -> dict:
        """A consistent copy for the display: rows, totals, rate (generations per minute) and ETA in seconds."""
        with self.lock:
            rows = {key: Row(**vars(row)) for key, row in sorted(self.rows.items())}
            elapsed = time.monotonic() - self.started
            done = sum(row.done for row in rows.values())
            left = sum(row.queued + row.running for row in rows.values())
            rate = done / elapsed * 60 if elapsed > 0 else 0.0
            failures, self.new_failures = self.new_failures, []
            notes, self.new_notes = self.new_notes, []
            finished, self.new_finished = self.new_finished, []
            return {
                "rows": rows,
                "elapsed": elapsed,
                "done": done,
                "left": left,
                "rate": rate,
                "eta": left / (rate / 60) if rate > 0 else None,
                "requests": self.calls.requests,
                "answers": self.calls.answers,
                "prompt_tokens": self.calls.prompt_tokens,
                "completion_tokens": self.calls.completion_tokens,
                "cost": self.calls.cost,
                "new_failures": failures,
                "new_notes": notes,
                "new_finished": finished,
            }


def batch_line(status: dict) -> str:
    """One batch's status, e.g. `batch orb-1 (openrouter, draft gen-paid, chunk 0 wave 0): in_progress, 0 of 6
    done`."""
    if status["status"] == "submitted":
        done = f", {status['requests']} request(s)"
    else:
        done = f", {status['completed'] or 0} of {status['requests']} done" + (
            f", {status['failed']} failed" if status["failed"] else ""
        )
    return (
        f"batch {status['batch_id']} ({status['api']}, {status['stage']} {status['model_id']}, chunk "
        f"{status['chunk']} wave {status['wave']}): {status['status']}{done}"
    )


def _send(message: dict) -> None:
    if _channel is None:
        return
    data = json.dumps(message).encode("utf-8")
    if len(data) >= _MAX_MESSAGE:
        message = {**message, "reason": str(message.get("reason", ""))[:1000]}
        data = json.dumps(message).encode("utf-8")[: _MAX_MESSAGE - 1]
    try:
        os.write(_channel, data + b"\n")
    except OSError:
        pass  # the run stopped listening; progress is a view, the store is the record


def _started(task):
    _send({"event": "start", "gen_id": task.gen_id})


def _succeeded(task):
    _send({"event": "success", "gen_id": task.gen_id})


def _failed(task, exception):
    _send({"event": "failure", "gen_id": task.gen_id, "reason": str(exception)})


def _attempted(task, record):
    _send({**record, "event": "attempt", "kind": record["event"], "gen_id": task.gen_id})


def _slot(task, details):
    _send({"event": "slot", "gen_id": task.gen_id, "waiting": details["waiting"]})


def _lost(task, details):
    _send({"event": "answer_lost", "gen_id": task.gen_id})


def _stopped(task, details):
    _send({"event": "stopped", "gen_id": task.gen_id})


def _waiting(task, details):
    _send({"event": "waiting", "gen_id": task.gen_id})


def _feeding(task):
    _send({"event": "fed", "stage": task.stage, "part": task.part})


def _gate_closed(task, exception):
    _send({"event": "gate", "kind": task.kind, "name": task.name, "key": task.key, "message": task.message})


def _batch_status(task, status):
    _send({**status, "event": "batch"})


def _batch_attempt(task, record):  # a batched request, on behalf of its generation
    _send({**record, "event": "attempt", "kind": record["event"]})


def _batch_failed(task, exception):
    _send(
        {
            "event": "batch_failed",
            "reason": f"batch {task.stage} {task.model_id} chunk {task.chunk} wave "
            f"{task.wave} ({type(task).__name__}): {exception}",
        }
    )


def _killed(task, reason: str) -> None:
    """In the worker process: Luigi ended a task process, or it died. The generation's record says so (retryable:
    no answer was kept, so trying again pays for nothing twice)."""
    if isinstance(task, GenerationTask):
        try:
            generation.record_failure(task.directory, task.member, reason, "killed", True, knobs.current().run_id)
        except OSError:
            pass  # the run's summary has the reason from the event below
        _send({"event": "failure", "gen_id": task.gen_id, "reason": reason})


def _timed_out(task, message):
    timeout = luigi.configuration.get_config().getint("worker", "timeout", 0)
    _killed(task, f"Luigi's worker timeout ({timeout} s) ended the task; its call in flight was abandoned")


def _died(task, message):
    _killed(task, f"its task process died ({message.split(' died ')[-1]}); any call in flight was abandoned")


HANDLERS = (  # (task class, Luigi event, handler)
    (GenerationTask, luigi.Event.START, _started),
    (GenerationTask, luigi.Event.SUCCESS, _succeeded),
    (GenerationTask, luigi.Event.FAILURE, _failed),
    (GenerationTask, ATTEMPT, _attempted),
    (GenerationTask, SLOT, _slot),
    (GenerationTask, ANSWER_LOST, _lost),
    (GenerationTask, STOPPED, _stopped),
    (GenerationTask, batching.WAITING, _waiting),
    (Feed, luigi.Event.START, _feeding),
    (GateClosed, luigi.Event.FAILURE, _gate_closed),
    *(
        (batch_task, event, handler)
        for batch_task in (BatchSubmit, BatchPoll)
        for event, handler in (
            (batching.STATUS, _batch_status),
            (ATTEMPT, _batch_attempt),
            (luigi.Event.FAILURE, _batch_failed),
        )
    ),
    (luigi.Task, luigi.Event.TIMEOUT, _timed_out),
    (luigi.Task, luigi.Event.PROCESS_FAILURE, _died),
)


@contextmanager
def events_reported() -> Iterator[None]:
    """The handlers above registered with Luigi for the run inside (the task processes it forks inherit them), and
    removed after it."""
    for task_class, event, handler in HANDLERS:
        task_class.event_handler(event)(handler)
    try:
        yield
    finally:
        for task_class, event, handler in HANDLERS:
            task_class.remove_event_handler(event, handler)


class Relay:
    """The build process's listener (`build_process`): forwards every message to the run's pipe, and keeps there, where
    Luigi's worker asks a failed task for its retry count, the answers that could not be stored (`LOST_ANSWERS`)."""

    def __init__(self, channel: int):
        self.channel = channel

    def apply(self, message: dict) -> None:
        if message["event"] == "answer_lost":
            generation.LOST_ANSWERS.add(message["gen_id"])
        try:
            os.write(self.channel, json.dumps(message).encode("utf-8") + b"\n")
        except OSError:
            pass  # the run stopped listening


class Listening:
    """Opens the pipe task processes report through and feeds a Monitor (or a Relay) from it until closed."""

    def __init__(self, monitor: "Monitor | Relay"):
        self.monitor = monitor
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="daydream-monitor", daemon=True)
        self._stop = False
        self._caught_up = threading.Event()

    @property
    def channel(self) -> int:
        """The pipe's write end (the build process inherits it)."""
        return self._write

    def caught_up(self, timeout_s: float = 5.0) -> "Monitor | Relay":
        """The monitor, once every message written to the pipe before this call has been applied (the pipe is first
        in, first out: a marker written now is read after them)."""
        self._caught_up.clear()
        _send({"event": "caught_up"})
        self._caught_up.wait(timeout_s)
        return self.monitor

    def __enter__(self) -> "Listening":
        global _channel
        _channel = self._write
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _channel
        _channel = None
        self._stop = True
        os.close(self._write)
        self._thread.join(timeout=5)
        os.close(self._read)

    def _pump(self) -> None:
        buffer = b""
        while True:
            ready, _, _ = select.select([self._read], [], [], 0.2)
            if not ready:
                if self._stop:
                    return
                continue
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line)
                    if message["event"] == "caught_up":
                        self._caught_up.set()
                    else:
                        self.monitor.apply(message)
                except (ValueError, KeyError):
                    pass
