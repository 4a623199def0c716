"""`daydream search NAME`: a budgeted search run round by round, each round an ordinary cohort built through the one
runner.

The strategy (`analysis.search`) asks for a round; the round is recorded as the cohort `search-<name>-r<round>`
(manifest + membership, so `report`, `gate`, `select`, `tournament` and `dedup` read it) and built as `daydream run`
builds a cohort (`cohort_run.run`: the runner's call slots, live progress, clean stop on Ctrl-C / SIGTERM), then its
scores decide the next round. Its generations are content-addressed: what another cohort or search made is found
again and costs nothing, and a killed search run again rebuilds its rounds from round 1 with no call repeated
(every round already made is complete) and the same decisions (deterministic from the seed and the scores).

The search's own calls are the generations a round had to make when it was first planned; that list is kept in
data/searches/<name>/rounds/r<round>.json before the round starts (`report.search_rounds`, shared with the
Luigi-native `tasks.SearchRound`), so a resumed search counts its budget as the first run did. The call budget
cuts a round to the combinations whose calls fit; the cost budget is the spending stop of the round's run
(`--max-cost` with what is left), which refuses the call that would exceed it.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from daydream_luigi.analysis import search as strategies
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.search_spec import RoundRequest
from daydream_luigi.execution import cohort_run, plans
from daydream_luigi.report.search_rounds import OwnRounds
from daydream_luigi.store import accounting


class Interrupted(Exception):
    """The round's run was stopped by `signum` (its finished work is kept; run the search again to resume)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class LiveRounds(OwnRounds):
    """A fetcher (`analysis.search.Fetcher`) that makes each round's generations through the runner."""

    backend: str
    verbosity: int = 1
    spent_usd: float = 0.0  # the search's own cost so far (the rounds are fetched in order)
    checked: bool = False  # the providers' preflight is done once, before the first call
    servers: Callable[..., AbstractContextManager] = lambda plan, pending: nullcontext()  # cli: the embedded model
    announce: Callable[[str], None] = lambda line: None  # cli: a line per round on stderr

    def fetch(self, number: int, request: RoundRequest) -> strategies.Fetched:
        spec, members, own = self.record(number, request)
        complete = accounting.complete_sets(self.paths)
        pending = sum(m.gen_id not in complete[m.stage] for m in members)
        self.announce(
            f"round {number} ({request.phase}): {len(request.combos)} combination(s), cohort {spec.cohort_id}, "
            f"{len(members)} generations, {pending} to make"
        )
        fetched = self.brought(spec.cohort_id, members, own, self._build(spec.cohort_id, members))
        self.spent_usd += fetched.cost_usd
        return fetched

    def _build(self, cohort_id: str, members: list[Member]) -> str | None:
        """Run the round's cohort unless it is complete; why it stopped short (budget, failed), or None."""
        complete = accounting.complete_sets(self.paths)
        pending = [m for m in members if m.gen_id not in complete[m.stage]]
        if not pending:
            return None
        plans.forget_plans()
        plan = plans.cohort_plan(cohort_id, self.backend)
        limit = self.search.budget.max_cost_usd
        request = cohort_run.Request(
            cohort_id,
            members,
            cohort_run.workers_needed(plan, pending, False, False),
            verbosity=self.verbosity,
            max_cost_usd=None if limit is None else max(0.0, limit - self.spent_usd),
            backend=self.backend,
        )
        if not self.checked:
            cohort_run.preflight(self.paths, request, pending)
            self.checked = True
        with self.servers(plan, pending):
            result = cohort_run.run(self.paths, request)
        if result.interrupted_by is not None:
            raise Interrupted(result.interrupted_by)
        if result.outcome.ok:
            return None
        return strategies.BUDGET if any(kind == "budget" for kind, _, _ in result.gates.values()) else strategies.FAILED
