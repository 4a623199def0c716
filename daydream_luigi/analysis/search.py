"""Search strategies as plain functions: from the spec, the rounds asked so far and the scores they brought to the
next round's request, or None when the strategy has nothing left to ask. No Luigi, no model, no file: the live
search (`execution.search`) and its replay call the same functions, so a replay takes the live decisions.

Deterministic from the seed and the scores: ties in a ranking are broken by a permutation of the combinations drawn
from the seed, and nothing else is random.

* ``halving`` (successive halving): every candidate gets one draft, its essay and one screening evaluation; each
  further screening round keeps the best ``ceil(n / eta)`` and gives them one more draft and one more screening
  replicate (up to the spec's replicates); once at most ``max(1, stop_after_passes)`` remain they are the finalists,
  judged as the gate requires (the spec's replicates, the gate's templates, the finalist judges). A round after
  finals (no pass yet) takes the next best combinations not judged as finalists yet.
* ``beam``: every combination of k_min is screened; the best ``beam_width`` are each extended by one concept and
  their extensions screened, up to k_max; then the best of k_max are finalists as in halving.
* ``random``: combinations in an order drawn from the seed, ``batch`` per round, each judged as a finalist at once:
  the baseline a strategy must beat at the same budget.
* ``exhaustive``: the cube, every combination as a finalist, in one round.

A combination's screen score is over its evaluations on the screen's templates (every judge and replicate once): the
lower end of its 95% t interval once it has 2 scores or more, else its mean.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import pandas as pd

from daydream_luigi.analysis import intervals
from daydream_luigi.analysis.gates import decide, passing
from daydream_luigi.core.combos import Combo, make_combo
from daydream_luigi.core.search_spec import RoundRequest, SearchSpec

SCREEN, FINAL = "screen", "final"
RANK_COLUMNS = ["combo_id", "n", "mean", "ci_low", "rank_value"]


def screen_table(search: SearchSpec, scores: pd.DataFrame) -> pd.DataFrame:
    """Per combination with a scored screen evaluation: n, mean, ci_low and the value it is ranked by."""
    rows = scores[scores["evaluation_template"].isin(search.screen_templates)]
    rows = rows.assign(score=pd.to_numeric(rows["score"], errors="coerce")).dropna(subset=["score"])
    rows = rows.drop_duplicates("gen_id") if "gen_id" in rows.columns else rows
    table = intervals.moments(rows.groupby("combo_id", sort=True)["score"]).reset_index()
    table["rank_value"] = table["ci_low"].where(table["n"] >= 2, table["mean"])
    return table.loc[:, RANK_COLUMNS]


def _tiebreak(search: SearchSpec, combos: Sequence[Combo]) -> dict[str, int]:
    """A position for each combination drawn from the seed: the order of equals, and random's order."""
    ids = sorted(c.combo_id for c in combos)
    random.Random(search.seed).shuffle(ids)
    return {combo_id: i for i, combo_id in enumerate(ids)}


def ranked(search: SearchSpec, combos: Sequence[Combo], scores: pd.DataFrame) -> list[Combo]:
    """The combinations best first: by screen score (unscored last), ties in the seed's order."""
    table = screen_table(search, scores)
    values = dict(zip(table["combo_id"], table["rank_value"]))
    order = _tiebreak(search, combos)

    def key(combo: Combo) -> tuple[float, int]:
        value = values.get(combo.combo_id, math.nan)
        return (-value if not math.isnan(value) else math.inf, order[combo.combo_id])

    return sorted(combos, key=key)


def _screen(combos: Sequence[Combo], search: SearchSpec, level: int) -> RoundRequest:
    return RoundRequest(
        SCREEN,
        tuple(combos),
        min(search.draft_replicates, level),
        search.screen_templates,
        search.screen_models,
        min(search.evaluation_replicates, level),
    )


def _final(combos: Sequence[Combo], search: SearchSpec) -> RoundRequest:
    return RoundRequest(
        FINAL,
        tuple(combos),
        search.draft_replicates,
        search.final_templates,
        search.final_models,
        search.evaluation_replicates,
    )


def _finalists(search: SearchSpec) -> int:
    return max(1, search.stop_after_passes)


def _screened(rounds: Sequence[RoundRequest]) -> list[Combo]:
    return list({c.combo_id: c for r in rounds for c in r.combos}.values())


def _next_finalists(
    search: SearchSpec, pool: Sequence[Combo], rounds: Sequence[RoundRequest], scores: pd.DataFrame
) -> RoundRequest | None:
    """The best combinations of `pool` not judged as finalists yet; None when none is left."""
    done = {c.combo_id for r in rounds if r.phase == FINAL for c in r.combos}
    left = [c for c in ranked(search, pool, scores) if c.combo_id not in done]
    return _final(left[: _finalists(search)], search) if left else None


def halving(search: SearchSpec, rounds: Sequence[RoundRequest], scores: pd.DataFrame) -> RoundRequest | None:
    if not rounds:
        candidates = search.candidates()
        order = _tiebreak(search, candidates)
        return _screen(sorted(candidates, key=lambda c: order[c.combo_id]), search, 1)
    last = rounds[-1]
    if last.phase == SCREEN:
        keep = ranked(search, last.combos, scores)[: math.ceil(len(last.combos) / search.eta)]
        if len(keep) <= _finalists(search):
            return _final(keep, search)
        return _screen(keep, search, len(rounds) + 1)
    return _next_finalists(search, _screened(rounds), rounds, scores)


def _extensions(beam: Sequence[Combo], concepts: Sequence[str]) -> list[Combo]:
    """Every combination one concept larger than a member of the beam, each once, in the beam's order."""
    found: dict[str, Combo] = {}
    for combo in beam:
        for concept in concepts:
            if concept not in combo.concept_ids:
                grown = make_combo((*combo.concept_ids, concept), combo.level, combo.k + 1)
                found.setdefault(grown.combo_id, grown)
    return list(found.values())


def beam(search: SearchSpec, rounds: Sequence[RoundRequest], scores: pd.DataFrame) -> RoundRequest | None:
    if not rounds:
        candidates = search.candidates(search.k_min)
        order = _tiebreak(search, candidates)
        return _screen(sorted(candidates, key=lambda c: order[c.combo_id]), search, 1)
    last = rounds[-1]
    size = last.combos[0].k
    if last.phase == SCREEN and size < search.k_max:
        best = ranked(search, last.combos, scores)[: search.beam_width]
        return _screen(ranked(search, _extensions(best, search.concepts), scores), search, 1)
    pool = [c for c in _screened(rounds) if c.k == search.k_max]
    return _next_finalists(search, pool, rounds, scores)


def random_order(search: SearchSpec, rounds: Sequence[RoundRequest], scores: pd.DataFrame) -> RoundRequest | None:
    candidates = search.candidates()
    order = _tiebreak(search, candidates)
    tried = {c.combo_id for r in rounds for c in r.combos}
    left = [c for c in sorted(candidates, key=lambda c: order[c.combo_id]) if c.combo_id not in tried]
    return _final(left[: search.batch], search) if left else None


def exhaustive(search: SearchSpec, rounds: Sequence[RoundRequest], scores: pd.DataFrame) -> RoundRequest | None:
    return None if rounds else _final(search.candidates(), search)


Strategy = Callable[[SearchSpec, Sequence[RoundRequest], pd.DataFrame], RoundRequest | None]
STRATEGIES: dict[str, Strategy] = {
    "halving": halving,
    "beam": beam,
    "random": random_order,
    "exhaustive": exhaustive,
}


def next_round(search: SearchSpec, rounds: Sequence[RoundRequest], scores: pd.DataFrame) -> RoundRequest | None:
    """The spec's strategy: the next round's request, or None when it has nothing left to ask."""
    return STRATEGIES[search.strategy](search, rounds, scores)


def fit(request: RoundRequest, new_calls: Mapping[str, int], calls_left: int | None) -> RoundRequest | None:
    """The request cut to the budget: its combinations in order (best first) while their new calls fit in
    `calls_left` (None: no call limit); None when not even the first fits. `new_calls`: combo_id -> the calls its work
    in this round would make (0 for work already done)."""
    if calls_left is None:
        return request
    kept: list[Combo] = []
    spent = 0
    for combo in request.combos:
        if spent + new_calls[combo.combo_id] > calls_left:
            break
        spent += new_calls[combo.combo_id]
        kept.append(combo)
    return replace(request, combos=tuple(kept)) if kept else None


def best_screen(search: SearchSpec, scores: pd.DataFrame) -> tuple[float, float]:
    """(mean, lower bound) of the best-ranked combination so far; NaN before any screen score."""
    table = screen_table(search, scores).sort_values(["rank_value", "combo_id"], ascending=[False, True])
    if table.empty:
        return math.nan, math.nan
    row = table.iloc[0]
    return float(row["mean"]), float(row["ci_low"])


# ------------------------------------------------------------------------------------------------------- the loop

ROUND_COLUMNS = [
    "round",
    "phase",
    "candidates",
    "calls",
    "cost_usd",
    "total_calls",
    "total_cost_usd",
    "best_screen_mean",
    "best_screen_lower_bound",
    "passes",
]
FOUND, BUDGET, EXHAUSTED, FAILED = "found", "budget", "exhausted", "failed"  # stop reasons


@dataclass(frozen=True)
class Fetched:
    """What a round brought: its evaluations' parsed scores, the calls the search itself made for it and their cost,
    and why it stopped short (None: every generation of the round is there)."""

    scores: pd.DataFrame
    calls: int
    cost_usd: float
    stopped: str | None = None


class Fetcher(Protocol):
    """Where a round's scores come from: a live run (`execution.search`), a kept cohort (a replay) or the rounds a
    `SearchRound` task made (`report.search_rounds`)."""

    def new_calls(self, number: int, request: RoundRequest) -> dict[str, int]:
        """combo_id -> the calls the round's work for it would make (0 for work already done)."""
        ...

    def fetch(self, number: int, request: RoundRequest) -> Fetched: ...


@dataclass
class Outcome:
    requests: list[RoundRequest] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    scores: pd.DataFrame | None = None
    passes: list[str] = field(default_factory=list)
    calls: int = 0
    cost_usd: float = 0.0
    stop_reason: str = EXHAUSTED


def _gate_passes(search: SearchSpec, scores: pd.DataFrame) -> list[str]:
    return passing(decide(scores, search.gate)) if len(scores) else []


def run_search(search: SearchSpec, fetcher: Fetcher, empty: pd.DataFrame) -> Outcome:
    """Rounds until the gate has `stop_after_passes` passes (found), the budget is spent or would be exceeded by the
    next round's first combination (budget), or the strategy has nothing left to ask (exhausted). A round that does
    not fit the call budget whole is cut to the best combinations whose calls fit. `empty`: the scores table with no
    rows (its columns)."""
    out = Outcome(scores=empty)
    budget = search.budget
    while True:
        scores = out.scores if out.scores is not None else empty
        out.passes = _gate_passes(search, scores)
        if search.stop_after_passes and len(out.passes) >= search.stop_after_passes:
            out.stop_reason = FOUND
            return out
        if budget.max_cost_usd is not None and out.cost_usd >= budget.max_cost_usd:
            out.stop_reason = BUDGET
            return out
        request = next_round(search, out.requests, scores)
        if request is None:
            out.stop_reason = EXHAUSTED
            return out
        number = len(out.requests) + 1
        left = None if budget.max_calls is None else budget.max_calls - out.calls
        fitted = fit(request, fetcher.new_calls(number, request), left)
        if fitted is None:
            out.stop_reason = BUDGET
            return out
        fetched = fetcher.fetch(number, fitted)
        out.requests.append(fitted)
        out.scores = pd.concat([scores, fetched.scores], ignore_index=True) if len(scores) else fetched.scores
        out.calls += fetched.calls
        out.cost_usd += fetched.cost_usd
        mean, low = best_screen(search, out.scores)
        out.passes = _gate_passes(search, out.scores)
        out.rows.append(
            {
                "round": number,
                "phase": fitted.phase,
                "candidates": len(fitted.combos),
                "calls": fetched.calls,
                "cost_usd": round(fetched.cost_usd, 6),
                "total_calls": out.calls,
                "total_cost_usd": round(out.cost_usd, 6),
                "best_screen_mean": round(mean, 4),
                "best_screen_lower_bound": round(low, 4),
                "passes": len(out.passes),
            }
        )
        if fetched.stopped is not None:
            out.stop_reason = fetched.stopped
            return out
