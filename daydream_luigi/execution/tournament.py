"""A tournament's rounds, built as `daydream run` builds a cohort: through the runner (`runner.Watch`), so the
judgments hold call slots of the judge's pool, report their progress, and stop cleanly on Ctrl-C / SIGTERM (the calls
in flight finish and their answers are kept; a second Ctrl-C abandons them)."""

from daydream_luigi.execution import pairwise, tasks
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.execution.monitor import Monitor
from daydream_luigi.execution.runner import Watch, workers_for
from daydream_luigi.providers.limits import gate
from daydream_luigi.store.files import METADATA, gen_dir


class Interrupted(Exception):
    def __init__(self, signum: int, abandoned: bool):
        super().__init__(signum)
        self.signum, self.abandoned = signum, abandoned


class RoundBuilder:
    """Makes the judgments of a round that are not kept yet: one build of the runner per round (`pairwise.play` calls
    it). Raises Interrupted when the round was stopped."""

    def __init__(self, paths, settings, judge: pairwise.Judge, run: Knobs, verbosity: int):
        self.paths, self.judge, self.run, self.verbosity = paths, judge, run, verbosity
        self.limiter = gate.limiter(paths, settings)  # the display shows the judge's pool rate in force
        self.workers = workers_for({judge.model.pool})
        self.asked: list[pairwise.Judgment] = []
        self.rounds = 0

    def __call__(self, judgments: list[pairwise.Judgment]) -> None:
        self.asked.extend(judgments)
        self.rounds += 1
        pending = [j for j in judgments if not (gen_dir(self.paths.gens, pairwise.STAGE, j.gen_id) / METADATA).exists()]
        if not pending:
            return
        monitor = Monitor.for_members(pending, lambda _: self.judge.model.pool, {pairwise.STAGE: set()})
        title = f"tournament round {self.rounds}"
        with Watch(self.paths, self.run, monitor, title, self.verbosity, self.limiter) as watch:
            watch.build([tasks.pairwise_task(j) for j in pending], min(self.workers, len(pending)))
        if watch.stopped:
            raise Interrupted(watch.stopper.signal, watch.stopper.abandoned)
