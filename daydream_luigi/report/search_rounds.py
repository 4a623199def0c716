"""A search's own rounds on disk, shared by the two ways a search runs (`daydream search`, whose `LiveRounds` builds a
round at a time through the runner, and the Luigi-native `SearchRound` task): each round's record
data/searches/<name>/rounds/r<round>.json, its cohort search-<name>-r<round> and what a made round brought.

The record lists the generations the search itself had to make, as they were when the round was first planned and
before it starts, so a resumed search counts its budget as the first run did; a round recorded for other
combinations (the spec or the scores changed since) cannot be resumed.

`step` is how a `SearchRound` task decides: it replays the rounds already made over their kept scores (the one loop
and strategies of `analysis.search`, no call) and says what to do next: make a round, go on to the next, or, the
search stopped, write rounds.csv, result.json and report.html as `daydream search` does.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.analysis import search as strategies
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.cohort_spec import CohortSpec
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member, calls_model
from daydream_luigi.core.search_spec import RoundRequest, SearchSpec, rounds_dir, search_dir
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.report.collect import collect_scores
from daydream_luigi.report.search import (
    concept_names,
    cube,
    empty_scores,
    evaluations_of,
    kept_cost,
    round_members,
    write_results,
)
from daydream_luigi.store import accounting
from daydream_luigi.store.files import atomic_write_json, read_json
from daydream_luigi.store.membership import membership_is_current, write_cohort


@dataclass
class OwnRounds:
    """The search's rounds as recorded: their own calls and their cohorts."""

    paths: Paths
    search: SearchSpec
    catalog: Catalog
    settings: Settings

    def record_path(self, number: int) -> Path:
        return rounds_dir(self.paths, self.search.name) / f"r{number}.json"

    def _planned_for_others(self, number: int) -> InputError:
        path = self.record_path(number)
        return InputError(
            f"{path}: round {number} of search {self.search.name} was planned for other combinations "
            f"({self.search.path} or the kept scores changed since); restore the spec, or remove "
            f"{path.parent.parent} to search again from round 1"
        )

    def _recorded(self, number: int) -> dict | None:
        path = self.record_path(number)
        return read_json(path) if path.exists() else None

    def own(self, number: int, request: RoundRequest, members: list[Member]) -> set[str]:
        """The round's generations the search itself makes: as recorded when the round was first planned, else
        those that call a model and are not complete now. `request` may be the round before its cut to the budget
        (the combinations after those recorded are the ones the cut left out); a round recorded for other
        combinations (the spec or the scores changed since) cannot be resumed."""
        recorded = self._recorded(number) or {"combos": [], "own": []}
        asked = [combo.combo_id for combo in request.combos]
        if recorded["combos"] != asked[: len(recorded["combos"])]:
            raise self._planned_for_others(number)
        planned = set(recorded["combos"])
        complete = accounting.complete_sets(self.paths)
        return set(recorded["own"]) | {
            m.gen_id
            for m in members
            if m.combo_id not in planned and calls_model(m, self.catalog) and m.gen_id not in complete[m.stage]
        }

    def new_calls(self, number: int, request: RoundRequest) -> dict[str, int]:
        members = round_members(self.search, number, request, self.catalog, self.settings)[1]
        own = self.own(number, request, members)
        calls = {combo.combo_id: 0 for combo in request.combos}
        for member in members:
            calls[member.combo_id] += member.gen_id in own
        return calls

    def record(self, number: int, request: RoundRequest) -> tuple[CohortSpec, list[Member], set[str]]:
        """The round's cohort spec, its generations and the search's own among them, recorded (its own calls
        before the round starts, its cohort's manifest and membership) unless they are already."""
        spec, members = round_members(self.search, number, request, self.catalog, self.settings)
        own = self.own(number, request, members)
        combos = [combo.combo_id for combo in request.combos]
        recorded = self._recorded(number)
        if recorded is None:
            atomic_write_json(
                self.record_path(number),
                {"round": number, "cohort_id": spec.cohort_id, "combos": combos, "own": sorted(own)},
            )
        elif recorded["combos"] != combos:
            raise self._planned_for_others(number)
        if not membership_is_current(self.paths, spec, members):
            write_cohort(self.paths, spec, members)
        return spec, members, own

    def brought(
        self, cohort_id: str, members: list[Member], own: set[str], stopped: str | None = None
    ) -> strategies.Fetched:
        """What the round brought: its evaluations' scores, the search's own calls made for it and their cost."""
        complete = accounting.complete_sets(self.paths)
        made = [m for m in members if m.gen_id in own]
        scores = evaluations_of(collect_scores(self.paths, cohort_id)[0], members)
        return strategies.Fetched(
            scores,
            sum(m.gen_id in complete[m.stage] for m in made),
            kept_cost(self.paths, self.catalog, made),
            stopped,
        )


class Unmade(Exception):
    """A round to make before the search can decide: its cohort is recorded, some of its generations are missing."""

    def __init__(self, cohort_id: str):
        super().__init__(cohort_id)
        self.cohort_id = cohort_id


class GoesOn(Exception):
    """The search asks for round `number`, after the rounds a step decides over."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


@dataclass
class MadeRounds(OwnRounds):
    """A fetcher (`analysis.search.Fetcher`) over the rounds up to `last`, each read from its kept scores once it is
    made (no call): a round not made yet (`is_made(cohort_id)` is false) raises `Unmade`, a round after `last`
    `GoesOn`."""

    last: int
    is_made: Callable[[str], bool]

    def fetch(self, number: int, request: RoundRequest) -> strategies.Fetched:
        if number > self.last:
            raise GoesOn(number)
        spec, members, own = self.record(number, request)
        if not self.is_made(spec.cohort_id):
            raise Unmade(spec.cohort_id)
        return self.brought(spec.cohort_id, members, own)


@dataclass(frozen=True)
class Step:
    """What a `SearchRound` does next: make the cohort `make`, or go on to round `next_round`, or neither (the search
    stopped: `record` is its result.json, written)."""

    make: str | None = None
    next_round: int | None = None
    record: dict | None = None


def step(
    paths: Paths, search: SearchSpec, catalog: Catalog, settings: Settings, number: int, is_made: Callable[[str], bool]
) -> Step:
    """Round `number`'s next step, decided over the rounds made so far (deterministic from the seed and the scores,
    as `daydream search` decides). `is_made(cohort_id)`: whether a round's cohort is built (its Luigi root is
    complete: every generation, and its reports)."""
    rounds = MadeRounds(paths, search, catalog, settings, number, is_made)
    try:
        outcome = strategies.run_search(search, rounds, empty_scores())
    except Unmade as unmade:
        return Step(make=unmade.cohort_id)
    except GoesOn as goes_on:
        return Step(next_round=goes_on.number)
    folder = search_dir(paths, search.name)
    return Step(record=write_results(folder, search, outcome, cube(search, catalog, settings), concept_names(catalog)))
