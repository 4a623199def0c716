"""A search's record and its replay: data/searches/<name>/rounds.csv, result.json and report.html (the yield curve),
the cube's calls and estimated cost for the same spec, what the search's own generations cost, and the fetcher that
replays a strategy over an already-scored cohort without a model call.

The replay reads the kept scores of exactly the generations the strategy asks for, from a cohort that has run or a
cohort spec whose generations are on disk; because gen_ids are
content-addressed, those ARE the cohort's generations when the cohort has the search's spec (its cube, or a live
search's own rounds). Its calls are counted as the live search counts its own: each generation that calls a model,
the first time the search asks for it; their cost is what their kept attempts cost.
"""

import copy
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis import search as strategies
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member, calls_model, expand
from daydream_luigi.core.pricing import estimate_cost_usd
from daydream_luigi.core.search_spec import (
    RoundRequest,
    SearchSpec,
    cube_spec,
    round_spec,
    search_dir,
)
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.report.collect import collect_scores
from daydream_luigi.store import accounting
from daydream_luigi.store.cohorts import expand_cohort, resolve
from daydream_luigi.store.costs import DEFAULT_PROMPT_TOKENS, usd_text
from daydream_luigi.store.files import ATTEMPTS, atomic_write_json, atomic_write_text, gen_dir, read_lines

ROUNDS, RESULT, PAGE = "rounds.csv", "result.json", "report.html"


def concept_names(catalog: Catalog) -> dict[str, str]:
    return {concept_id: concept.name for concept_id, concept in catalog.concepts.items()}


def replay_dir(paths: Paths, name: str, cohort_id: str) -> Path:
    """A replay's record, beside (never over) the live search's."""
    return search_dir(paths, name) / f"replay-{cohort_id}"


def round_members(search: SearchSpec, number: int, request: RoundRequest, catalog: Catalog, settings: Settings):
    """The round's cohort spec and its generations (content-addressed gen_ids)."""
    spec = round_spec(search, number, request)
    return spec, expand(spec, catalog, settings)


@dataclass(frozen=True)
class Cube:
    calls: int
    est_cost_usd: float | None  # None: a model of the cube has no known price


def estimate(catalog: Catalog, settings: Settings, members: Iterable[Member]) -> Cube:
    """Calls and estimated cost of making `members` from nothing (the plan's typical prompt sizes, every model call
    at its stage's max_tokens)."""
    calling = [m for m in members if calls_model(m, catalog)]
    costs = [
        estimate_cost_usd(
            catalog.models[m.llm_model_id].price,
            DEFAULT_PROMPT_TOKENS[m.stage],
            int(settings.stage(m.stage).max_tokens),
        )
        for m in calling
    ]
    return Cube(len(calling), None if None in costs else sum(c for c in costs if c is not None))


def cube(search: SearchSpec, catalog: Catalog, settings: Settings) -> Cube:
    return estimate(catalog, settings, expand(cube_spec(search), catalog, settings))


def worst_case(search: SearchSpec, cube_size: Cube) -> Cube:
    """The most a search may spend: its budget; a limit it leaves out is the cube's (at the cube's mean estimated
    cost per call)."""
    calls = search.budget.max_calls if search.budget.max_calls is not None else cube_size.calls
    cost: float | None = search.budget.max_cost_usd
    if cost is None and cube_size.est_cost_usd is not None:
        cost = calls * (cube_size.est_cost_usd / cube_size.calls if cube_size.calls else 0.0)
    return Cube(calls, cost)


def kept_cost(paths: Paths, catalog: Catalog, members: Iterable[Member]) -> float:
    """What the kept attempts of these generations cost (reported, else estimated from the model's prices; an
    unpriced answer adds nothing), in gen_id order so that a live search and its replay add the same numbers in the
    same order."""
    calls = accounting.Calls()
    for member in sorted(members, key=lambda m: (m.stage, m.gen_id)):
        price = catalog.models[member.llm_model_id].price if member.llm_model_id in catalog.models else None
        for record in read_lines(gen_dir(paths.gens, member.stage, member.gen_id) / ATTEMPTS):
            calls.add(record, price)
    return calls.cost


def evaluations_of(scores: pd.DataFrame, members: Iterable[Member]) -> pd.DataFrame:
    """The rows of `scores` for the round's evaluations, each once."""
    wanted = {m.gen_id for m in members if m.stage == "evaluation"}
    return scores[scores["gen_id"].isin(wanted)].drop_duplicates("gen_id").reset_index(drop=True)


class Replay:
    """A fetcher (`analysis.search.Fetcher`) over already-scored cohorts (one, or several taken together, named
    `a+b`): zero model calls; a generation the strategy asks for that they lack, or have not made, is an error
    naming it."""

    def __init__(
        self,
        paths: Paths,
        search: SearchSpec,
        catalog: Catalog,
        settings: Settings,
        backend: str,
        cohort_ids: Sequence[str],
    ):
        self.paths, self.search, self.catalog, self.settings = paths, search, catalog, settings
        self.cohort_id = "+".join(cohort_ids)
        self.members: dict[str, Member] = {}
        frames = []
        for cohort_id in cohort_ids:
            spec = resolve(paths, cohort_id, catalog, settings, backend)
            members = {m.gen_id: m for m in expand_cohort(spec, paths, catalog, settings)}
            self.members.update(members)
            evaluations = sorted((m for m in members.values() if m.stage == "evaluation"), key=lambda m: m.gen_id)
            frames.append(collect_scores(paths, cohort_id, evaluations)[0])
        self.scores = pd.concat(frames, ignore_index=True)
        self.asked: set[str] = set()

    def again(self, search: SearchSpec) -> "Replay":
        """A new replay of `search` over the same kept scores (read once: a benchmark replays many seeds)."""
        fresh = copy.copy(self)
        fresh.search, fresh.asked = search, set()
        return fresh

    def _members(self, number: int, request: RoundRequest) -> list[Member]:
        members = round_members(self.search, number, request, self.catalog, self.settings)[1]
        lacking = [m for m in members if m.gen_id not in self.members]
        not_made = {m.gen_id for m in members if m.stage == "evaluation"} - set(self.scores["gen_id"])
        lacking += [m for m in members if m.gen_id in not_made and m.gen_id in self.members]
        if lacking:
            first = lacking[0]
            what = "lacks" if first.gen_id not in self.members else "has not made"
            raise InputError(
                f"--replay {self.cohort_id}: round {number} of search {self.search.name} asks for {first.stage} "
                f"{first.gen_id} (combination {first.combo_id}, template {first.template_id}, model "
                f"{first.llm_model_id}, replicate {first.replicate}), which cohort {self.cohort_id} {what}"
                f"{f' (and {len(lacking) - 1} more)' if len(lacking) > 1 else ''}; replay over a cohort with the "
                f"search's spec (its cube: `daydream plan --search {self.search.name}`)"
            )
        return members

    def new_calls(self, number: int, request: RoundRequest) -> dict[str, int]:
        calls = {combo.combo_id: 0 for combo in request.combos}
        for member in round_members(self.search, number, request, self.catalog, self.settings)[1]:
            if member.gen_id not in self.asked and calls_model(member, self.catalog):
                calls[member.combo_id] += 1
        return calls

    def fetch(self, number: int, request: RoundRequest) -> strategies.Fetched:
        members = self._members(number, request)
        own = [m for m in members if m.gen_id not in self.asked and calls_model(m, self.catalog)]
        self.asked.update(m.gen_id for m in members)
        return strategies.Fetched(
            evaluations_of(self.scores, members), len(own), kept_cost(self.paths, self.catalog, own)
        )


def empty_scores() -> pd.DataFrame:
    return pd.DataFrame(columns=PARSED_SCORES_COLUMNS)


def result_record(search: SearchSpec, outcome: strategies.Outcome, cube_size: Cube, concepts: dict) -> dict:
    """result.json: the essays that pass with their combinations, what was spent and what is left, why it stopped,
    and the cube of the same spec."""
    scores = outcome.scores if outcome.scores is not None else empty_scores()
    combo_of = dict(zip(scores["parent_gen_id"], scores["combo_id"]))
    combos = {c.combo_id: c for r in outcome.requests for c in r.combos}
    found = [
        {
            "gen_id": essay,
            "combo_id": combo_of.get(essay),
            "concepts": list(combos[combo_of[essay]].concept_ids) if combo_of.get(essay) in combos else [],
            "concept_names": [concepts.get(c, c) for c in combos[combo_of[essay]].concept_ids]
            if combo_of.get(essay) in combos
            else [],
        }
        for essay in outcome.passes
    ]
    budget = search.budget
    return {
        "search": search.name,
        "spec": str(search.path),
        "strategy": search.strategy,
        "seed": search.seed,
        "gate": {"name": search.gate.name, "file": str(search.gate.path), "sha256": search.gate.sha256},
        "found": bool(found),
        "passes": found,
        "rounds": len(outcome.requests),
        "calls": outcome.calls,
        "cost_usd": round(outcome.cost_usd, 6),
        "budget": {"max_calls": budget.max_calls, "max_cost_usd": budget.max_cost_usd},
        "budget_left": {
            "calls": None if budget.max_calls is None else budget.max_calls - outcome.calls,
            "cost_usd": None if budget.max_cost_usd is None else round(budget.max_cost_usd - outcome.cost_usd, 6),
        },
        "stop_reason": outcome.stop_reason,
        "cube": {
            "calls": cube_size.calls,
            "est_cost_usd": None if cube_size.est_cost_usd is None else round(cube_size.est_cost_usd, 6),
        },
    }


def one_line(search: SearchSpec, record: dict, folder: Path) -> str:
    """What `daydream search` ends with: found or not, at what calls and cost, against the cube's."""
    cube_size = record["cube"]
    share = f"{record['calls'] / cube_size['calls']:.0%} of its calls" if cube_size["calls"] else "an empty cube"
    what = (
        f"found {len(record['passes'])} essay(s) passing gate {search.gate.name}"
        if record["found"]
        else f"no essay passes gate {search.gate.name}"
    )
    return (
        f"search {search.name}: {what} at {record['calls']:,} calls, ${record['cost_usd']:.4f} "
        f"(the cube: {cube_size['calls']:,} calls, est. {usd_text(cube_size['est_cost_usd'])}; {share}); "
        f"stopped: {record['stop_reason']}; {folder / RESULT}"
    )


def _yield_curve(rows: pd.DataFrame) -> str:
    """An inline SVG: the best screen mean (line) and the gate's passes (bars) against the calls spent."""
    if rows.empty:
        return "<p>No round yet.</p>"
    width, height, pad = 560, 220, 36
    x_max = max(1, int(rows["total_calls"].max()))
    passes_max = max(1, int(rows["passes"].max()))

    def x(calls: float) -> float:
        return pad + (width - 2 * pad) * calls / x_max

    def y(score: float) -> float:
        return height - pad - (height - 2 * pad) * score / 10

    means = rows["best_screen_mean"].fillna(0)
    line = " ".join(f"{x(c):.1f},{y(m):.1f}" for c, m in zip(rows["total_calls"], means))
    bars = "".join(
        f'<rect x="{x(c) - 3:.1f}" y="{y(10 * p / passes_max):.1f}" width="6" '
        f'height="{y(0) - y(10 * p / passes_max):.1f}" fill="#2a7"><title>{p} pass(es) at {c} calls</title></rect>'
        for c, p in zip(rows["total_calls"], rows["passes"])
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="yield curve">'
        f'<line x1="{pad}" y1="{y(0)}" x2="{width - pad}" y2="{y(0)}" stroke="#888"/>'
        f'<polyline points="{line}" fill="none" stroke="#36c" stroke-width="2"/>{bars}'
        f'<text x="{pad}" y="{height - 8}" font-size="11">calls spent (0 to {x_max:,}); line: best screen mean '
        f"(0-10); bars: gate passes (up to {passes_max})</text></svg>"
    )


def _page(search: SearchSpec, rows: pd.DataFrame, record: dict) -> str:
    table = rows.to_html(index=False, na_rep="", border=0) if not rows.empty else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>search {html.escape(search.name)}</title></head>"
        f"<body><h1>Search {html.escape(search.name)} ({html.escape(search.strategy)}, seed {search.seed})</h1>"
        f"<p>Gate {html.escape(search.gate.name)}; stopped: {html.escape(record['stop_reason'])}; "
        f"{record['calls']:,} calls, ${record['cost_usd']:.4f}; the cube: {record['cube']['calls']:,} calls, "
        f"est. {usd_text(record['cube']['est_cost_usd'])}.</p><h2>Yield curve</h2>{_yield_curve(rows)}"
        f"<h2>Rounds</h2>{table}</body></html>\n"
    )


def write_results(
    folder: Path, search: SearchSpec, outcome: strategies.Outcome, cube_size: Cube, concepts: dict
) -> dict:
    """rounds.csv, result.json and report.html in `folder`; returns the result record."""
    rows = pd.DataFrame(outcome.rows, columns=strategies.ROUND_COLUMNS)
    record = result_record(search, outcome, cube_size, concepts)
    atomic_write_text(folder / ROUNDS, rows.to_csv(index=False))
    atomic_write_json(folder / RESULT, record)
    atomic_write_text(folder / PAGE, _page(search, rows, record))
    return record
