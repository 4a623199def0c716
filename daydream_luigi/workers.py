"""Luigi workers that run tasks on a pool of reused threads instead of forking a process per task.

Every task here is an I/O-bound HTTP call plus a few small file writes. Luigi's stock worker forks one process per
task whenever workers > 1, which measured about 30 ms per generation on 2 cores (bench/scale.py), far above the cost
of the work itself. Scheduling, resources (pool limits) and the central scheduler are unchanged: only where a task's
run() executes differs.

The threads are reused across tasks and across builds (one per stage) of one process: starting a thread per task cost
~0.1 ms of GIL time and, worse, gave every task a fresh HTTP session, so no connection was ever reused (one TCP
connect, and one handler thread at the server, per model call). With reused threads the per-thread session in
`stages._session` keeps its connection alive from one call to the next.
"""

import logging
import queue
import threading

from luigi import interface, scheduler, worker
from luigi.scheduler import PENDING

log = logging.getLogger("daydream")
_IDLE_EXIT_S = 120.0  # a pool thread with nothing to do for this long exits (its HTTP session goes with it)


class _ThreadPool:
    """Daemon threads taking jobs from one queue; grows so that every submitted job starts at once.

    Luigi never runs more tasks at a time than `workers`, so the pool holds at most that many busy threads (plus
    idle ones left from an earlier, wider build). Daemon threads: an interrupted run never waits for a model call.
    """

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0

    def submit(self, job) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # reserved: one idle thread will take this job
            else:
                self._count += 1
                threading.Thread(target=self._loop, name=f"luigi-task-{self._count}", daemon=True).start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no job was reserved for this thread: leave
                        self._idle -= 1
                        return
                continue  # a job was reserved for it and is about to arrive
            _current.job_running = True
            try:
                job()
            except BaseException:  # TaskProcess.run reports its own failures; this only keeps the thread alive
                log.exception("task thread: unexpected error")
            self.release()

    def release(self) -> None:
        """Count the calling pool thread as idle once its job has nothing left to do but return.

        Called when a task reports its result (see _ResultQueue.put), not after it returns: the worker, woken by that
        result, submits the next task at once, and must find this thread idle rather than start another one.
        """
        if getattr(_current, "job_running", False):
            _current.job_running = False
            with self._lock:
                self._idle += 1


_current = threading.local()
_POOL = _ThreadPool()


class _TaskThread:
    """Gives a Luigi TaskProcess body the process-like interface the worker polls (is_alive, exitcode, timeout)."""

    def __init__(self, task_process: worker.TaskProcess):
        self.task_process = task_process
        self.task = task_process.task
        self.timeout_time = None
        self.exitcode = 0  # a task cannot die without putting its result: TaskProcess.run reports in `finally`
        self.use_multiprocessing = True  # tells the worker to start() it rather than run it inline
        self._done = threading.Event()

    def start(self) -> None:
        _POOL.submit(self.run)

    def run(self) -> None:
        try:
            self.task_process.run()
        finally:
            self._done.set()

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout=None) -> None:
        self._done.wait(timeout)

    def terminate(self) -> None:
        """A thread cannot be killed; Luigi calls this only at shutdown, and the pool threads are daemons."""


class _ResultQueue(queue.Queue):
    """A thread queue with the close() that Luigi calls on its multiprocessing queue at shutdown."""

    def put(self, item, block=True, timeout=None):
        _POOL.release()  # a task's result is the last thing its thread does for it
        super().put(item, block, timeout)

    def close(self):
        pass


class ThreadedWorker(worker.Worker):
    """A Luigi worker running tasks in threads, fed from an iterator so the scheduler holds a bounded window.

    With `feed`, tasks are added while the build runs: before each request for work, enough of the next ones to keep
    `window` of this worker's tasks unfinished (pending or running) in the scheduler. Luigi's scheduler scans all
    pending tasks on every request, so this keeps its cost per task O(window) however long the feed; and since a slot
    is refilled as soon as a task finishes, the workers never wait for a whole window to drain.
    """

    def __init__(self, *args, feed=None, window: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._task_result_queue = _ResultQueue()
        self._feed = feed
        self._window = window
        self._unfinished: set[str] = set()  # ids this worker told the scheduler are pending and not yet done/failed

    def _add_task(self, *args, **kwargs):
        if kwargs["status"] == PENDING:
            self._unfinished.add(kwargs["task_id"])
        else:  # DONE, FAILED, DISABLED or UNKNOWN: nothing more will come of it in this build
            self._unfinished.discard(kwargs["task_id"])
        super()._add_task(*args, **kwargs)

    def _top_up(self) -> None:
        while self._feed is not None and len(self._unfinished) < self._window:
            task = next(self._feed, None)
            if task is None:
                self._feed = None
            else:
                self.add(task)

    def _get_work(self):
        self._top_up()
        return super()._get_work()

    def _create_task_process(self, task):
        task_process = super()._create_task_process(task)
        task_process.use_multiprocessing = False
        return _TaskThread(task_process)


class ThreadedWorkerFactory(interface._WorkerSchedulerFactory):
    def __init__(self, feed=None, window: int = 0):
        self.feed, self.window = feed, window

    def create_local_scheduler(self):
        # Luigi's default local scheduler prunes its whole task graph on every get_work (O(n) per task, O(n^2) per
        # build) to expire dead workers and old tasks; one short-lived in-process worker has neither.
        return scheduler.Scheduler(prune_on_get_work=False, record_task_history=False)

    def create_worker(self, scheduler, worker_processes, assistant=False):
        return ThreadedWorker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant,
                              feed=self.feed, window=self.window)
