"""`daydream search NAME`: a budgeted search run round by round, each round an ordinary cohort built through the one
runner.

The strategy (`analysis.search`) asks for a round; the round is recorded as the cohort `search-<name>-r<round>`
(manifest + membership, so `report`, `gate`, `select`, `tournament` and `dedup` read it) and built as `daydream run`
builds a cohort (`cohort_run.run`: the runner's call slots, live progress, clean stop on Ctrl-C / SIGTERM), then its
scores decide the next round. Its generations are content-addressed: what another cohort or search made is found
again and costs nothing, and a killed search run again rebuilds its rounds from round 1 with no call repeated
(every round already made is complete) and the same decisions (deterministic from the seed and the scores).

The search's own calls are the generations a round had to make when it was first planned; that list is kept in
data/searches/<name>/rounds/r<round>.json before the round starts, so a resumed search counts its budget as the
first run did. The call budget cuts a round to the combinations whose calls fit; the cost budget is the spending
stop of the round's run (`--max-cost` with what is left), which refuses the call that would exceed it.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from daydream_luigi.analysis import search as strategies
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member, calls_model
from daydream_luigi.core.search_spec import RoundRequest, SearchSpec, cube_spec
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.execution import cohort_run, plans
from daydream_luigi.execution.neutrality import require_neutral_inputs
from daydream_luigi.report.collect import collect_scores
from daydream_luigi.report.search import evaluations_of, kept_cost, round_members, search_dir
from daydream_luigi.store import accounting
from daydream_luigi.store.files import atomic_write_json, read_json
from daydream_luigi.store.membership import membership_is_current, write_cohort


class Interrupted(Exception):
    """The round's run was stopped by `signum` (its finished work is kept; run the search again to resume)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class LiveRounds:
    """A fetcher (`analysis.search.Fetcher`) that makes each round's generations through the runner."""

    paths: Paths
    search: SearchSpec
    catalog: Catalog
    settings: Settings
    backend: str
    verbosity: int = 1
    spent_usd: float = 0.0  # the search's own cost so far (the rounds are fetched in order)
    checked: bool = False  # the providers' preflight is done once, before the first call
    servers: Callable[..., AbstractContextManager] = lambda plan, pending: nullcontext()  # cli: the embedded model
    announce: Callable[[str], None] = lambda line: None  # cli: a line per round on stderr

    def _plan_path(self, number: int):
        return search_dir(self.paths, self.search.name) / "rounds" / f"r{number}.json"

    def _own(self, number: int, request: RoundRequest, members: list[Member]) -> set[str]:
        """The round's generations the search itself makes: as recorded when the round was first planned, else
        those that call a model and are not complete now. A round recorded for other combinations (the spec or
        the scores changed since) cannot be resumed."""
        path = self._plan_path(number)
        if path.exists():
            recorded = read_json(path)
            if recorded["combos"] != [combo.combo_id for combo in request.combos]:
                raise InputError(
                    f"{path}: round {number} of search {self.search.name} was planned for other combinations "
                    f"({self.search.path} or the kept scores changed since); restore the spec, or remove "
                    f"{path.parent.parent} to search again from round 1"
                )
            return set(recorded["own"])
        complete = accounting.complete_sets(self.paths)
        return {m.gen_id for m in members if calls_model(m, self.catalog) and m.gen_id not in complete[m.stage]}

    def new_calls(self, number: int, request: RoundRequest) -> dict[str, int]:
        members = round_members(self.search, number, request, self.catalog, self.settings)[1]
        own = self._own(number, request, members)
        calls = {combo.combo_id: 0 for combo in request.combos}
        for member in members:
            calls[member.combo_id] += member.gen_id in own
        return calls

    def fetch(self, number: int, request: RoundRequest) -> strategies.Fetched:
        spec, members = round_members(self.search, number, request, self.catalog, self.settings)
        own = self._own(number, request, members)
        path = self._plan_path(number)
        if not path.exists():
            combos = [combo.combo_id for combo in request.combos]
            atomic_write_json(
                path, {"round": number, "cohort_id": spec.cohort_id, "combos": combos, "own": sorted(own)}
            )
        if not membership_is_current(self.paths, spec, members):
            write_cohort(self.paths, spec, members)
        complete = accounting.complete_sets(self.paths)
        pending = sum(m.gen_id not in complete[m.stage] for m in members)
        self.announce(
            f"round {number} ({request.phase}): {len(request.combos)} combination(s), cohort {spec.cohort_id}, "
            f"{len(members)} generations, {pending} to make"
        )
        stopped = self._build(spec.cohort_id, members)
        complete = accounting.complete_sets(self.paths)
        made = [m for m in members if m.gen_id in own]
        cost = kept_cost(self.paths, self.catalog, made)
        self.spent_usd += cost
        scores = evaluations_of(collect_scores(self.paths, spec.cohort_id)[0], members)
        return strategies.Fetched(scores, sum(m.gen_id in complete[m.stage] for m in made), cost, stopped)

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


def preflight(paths: Paths, search: SearchSpec, catalog: Catalog, settings: Settings) -> None:
    """Before any call: the inputs every round may send (the cube's) are neutral."""
    require_neutral_inputs(paths, cube_spec(search), catalog, settings)
