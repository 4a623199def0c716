"""Luigi workers that run tasks in threads instead of forking a process per task.

Every task here is an I/O-bound HTTP call plus a few small file writes. Luigi's stock worker forks one process per
task whenever workers > 1, which measured about 30 ms per generation on 2 cores (bench/scale.py), far above the cost
of the work itself. Scheduling, resources (pool limits) and the central scheduler are unchanged: only where a task's
run() executes differs.
"""

import queue
import threading

from luigi import interface, worker


class _TaskThread(threading.Thread):
    """Gives a Luigi TaskProcess body the process-like interface the worker polls (is_alive, exitcode, timeout)."""

    def __init__(self, task_process: worker.TaskProcess):
        super().__init__(name=f"luigi-task-{task_process.task.task_id}", daemon=True)
        self.task_process = task_process
        self.task = task_process.task
        self.timeout_time = None
        self.exitcode = 0  # a thread cannot die without putting its result: TaskProcess.run reports in `finally`
        self.use_multiprocessing = True  # tells the worker to start() it rather than run it inline

    def run(self):
        self.task_process.run()


class _ResultQueue(queue.Queue):
    """A thread queue with the close() that Luigi calls on its multiprocessing queue at shutdown."""

    def close(self):
        pass


class ThreadedWorker(worker.Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._task_result_queue = _ResultQueue()

    def _create_task_process(self, task):
        task_process = super()._create_task_process(task)
        task_process.use_multiprocessing = False
        return _TaskThread(task_process)


class ThreadedWorkerFactory(interface._WorkerSchedulerFactory):
    def create_worker(self, scheduler, worker_processes, assistant=False):
        return ThreadedWorker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)
