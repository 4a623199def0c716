"""Search strategies as plain functions (analysis.search), without Luigi or a model: a simulated world scores each
evaluation from its combination (a planted combination scores high), and a fetcher counts the calls a round makes."""

import dataclasses
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from daydream_luigi.analysis import search as strategies
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS
from daydream_luigi.core.combos import make_combo
from daydream_luigi.core.gates import Criterion, Gate
from daydream_luigi.core.search_spec import Budget, SearchSpec

CONCEPTS = tuple(f"c{i}" for i in range(8))
PLANTED = ("c1", "c4", "c6")
GATE = Gate("found", Path("config/gates/found.yaml"), "", (Criterion("novelty", 7.0, "lower-bound"),), 2, None)


def spec(**changes) -> SearchSpec:
    base = SearchSpec(
        name="s",
        path=Path("config/searches/s.yaml"),
        concepts=CONCEPTS,
        k_min=3,
        k_max=3,
        level="paragraph",
        draft_templates=("d",),
        essay_templates=("e",),
        generation_models=("gen",),
        screen_templates=("novelty",),
        screen_models=("judge-a",),
        gate=GATE,
        evaluation_models=("judge-a", "judge-b"),
        draft_replicates=3,
        evaluation_replicates=2,
        budget=Budget(None, None),
        strategy="halving",
        seed=1,
        stop_after_passes=1,
        eta=3,
        beam_width=2,
        batch=1,
    )
    return dataclasses.replace(base, **changes)


def noise(*parts) -> float:
    """-1.5 .. +1.5, fixed by its inputs (the fake judge's hash)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest(), 16) % 31 / 10 - 1.5


def planted_score(concepts: tuple) -> float:
    return 9.0 if set(concepts) == set(PLANTED) else 4.0


def additive_score(concepts: tuple) -> float:
    return 2.0 + 2.0 * len(set(concepts) & set(PLANTED))


class World:
    """Scores every evaluation a round asks for; counts each generation the first time it is asked for (a call)."""

    def __init__(self, score=planted_score, noise_seed=0):
        self.score, self.noise_seed, self.made = score, noise_seed, set()

    def generations(self, request):
        for combo in request.combos:
            for d in range(1, request.draft_replicates + 1):
                essay = f"{combo.combo_id}-d{d}"
                yield combo, ("draft", essay), None
                yield combo, ("essay", essay), None
                for template in request.evaluation_templates:
                    for judge in request.evaluation_models:
                        for r in range(1, request.evaluation_replicates + 1):
                            yield combo, ("evaluation", f"{essay}-{template}-{judge}-{r}"), (essay, template, judge, r)

    def new_calls(self, number, request):
        calls = {c.combo_id: 0 for c in request.combos}
        for combo, key, _ in self.generations(request):
            calls[combo.combo_id] += key not in self.made
        return calls

    def fetch(self, number, request):
        rows, calls = [], 0
        for combo, key, evaluation in self.generations(request):
            calls += key not in self.made
            self.made.add(key)
            if evaluation:
                essay, template, judge, r = evaluation
                value = self.score(combo.concept_ids) + noise(self.noise_seed, key[1])
                rows.append(
                    {
                        "gen_id": key[1],
                        "parent_gen_id": essay,
                        "evaluation_template": template,
                        "evaluation_model": judge,
                        "evaluation_replicate": r,
                        "score": min(10.0, max(0.0, value)),
                        "combo_id": combo.combo_id,
                    }
                )
        frame = pd.DataFrame(rows, columns=PARSED_SCORES_COLUMNS)
        return strategies.Fetched(frame, calls, calls * 0.001)


EMPTY = pd.DataFrame(columns=PARSED_SCORES_COLUMNS)


def planted_found(search, outcome) -> bool:
    combo = make_combo(PLANTED, "paragraph", search.k_max).combo_id
    return any(essay.startswith(combo) for essay in outcome.passes)


def cube_calls(search) -> int:
    return sum(World().new_calls(1, strategies.exhaustive(search, [], EMPTY)).values())


def test_halving_screens_everything_once_then_keeps_a_third_and_finds_the_planted_combination_for_a_fraction():
    search = spec()
    outcome = strategies.run_search(search, World(), EMPTY)
    assert [(r["phase"], r["candidates"]) for r in outcome.rows] == [
        ("screen", 56),
        ("screen", 19),
        ("screen", 7),
        ("screen", 3),
        ("final", 1),
    ]
    assert [r.draft_replicates for r in outcome.requests] == [1, 2, 3, 3, 3]
    assert [r.evaluation_replicates for r in outcome.requests] == [1, 2, 2, 2, 2]
    assert outcome.stop_reason == "found" and planted_found(search, outcome)
    assert outcome.calls == sum(r["calls"] for r in outcome.rows) == outcome.rows[-1]["total_calls"]
    assert cube_calls(search) == 56 * (3 + 3 + 3 * 2 * 2) and outcome.calls <= 0.3 * cube_calls(search)


def test_the_same_seed_and_scores_give_the_same_rounds_and_another_seed_another_first_order():
    first, again = (strategies.run_search(spec(), World(), EMPTY) for _ in range(2))
    assert pd.DataFrame(first.rows).equals(pd.DataFrame(again.rows)) and first.requests == again.requests
    other = strategies.run_search(spec(seed=2), World(), EMPTY)
    assert other.requests[0].combos != first.requests[0].combos
    assert set(other.requests[0].combos) == set(first.requests[0].combos)


def test_the_rank_is_the_lower_bound_once_a_combination_has_two_scores_else_its_mean():
    search = spec()
    combos = search.candidates()[:2]
    rows = [  # combo 0: one score of 8; combo 1: 7 and 7.2 (lower bound below 7), mean 7.1
        {"gen_id": "a", "combo_id": combos[0].combo_id, "evaluation_template": "novelty", "score": 8.0},
        {"gen_id": "b", "combo_id": combos[1].combo_id, "evaluation_template": "novelty", "score": 7.0},
        {"gen_id": "c", "combo_id": combos[1].combo_id, "evaluation_template": "novelty", "score": 7.2},
        {"gen_id": "d", "combo_id": combos[1].combo_id, "evaluation_template": "other", "score": 10.0},
    ]
    table = strategies.screen_table(search, pd.DataFrame(rows))
    by_combo = table.set_index("combo_id")
    assert by_combo.loc[[c.combo_id for c in combos], "n"].tolist() == [1, 2]
    assert by_combo.loc[combos[0].combo_id, "rank_value"] == 8.0
    assert by_combo.loc[combos[1].combo_id, "rank_value"] == pytest.approx(7.1 - 12.706204736 * 0.1)
    assert strategies.ranked(search, combos[::-1], pd.DataFrame(rows)) == combos


def test_a_call_budget_cuts_the_round_that_would_exceed_it_to_its_best_combinations_and_then_stops():
    search = spec(budget=Budget(100, None))
    outcome = strategies.run_search(search, World(), EMPTY)
    assert [(r["phase"], r["candidates"], r["calls"]) for r in outcome.rows] == [("screen", 33, 99)]
    assert outcome.stop_reason == "budget" and outcome.calls == 99


def test_a_cost_budget_stops_once_spent():
    outcome = strategies.run_search(spec(budget=Budget(None, 0.2)), World(), EMPTY)
    assert outcome.stop_reason == "budget" and outcome.cost_usd >= 0.2
    assert outcome.cost_usd - outcome.rows[-1]["cost_usd"] < 0.2


def test_after_finals_without_a_pass_the_next_best_combinations_are_judged_until_none_is_left():
    search = spec(stop_after_passes=0, concepts=CONCEPTS[:5])  # 0: spend the budget; 10 combinations
    outcome = strategies.run_search(search, World(), EMPTY)
    finals = [c.combo_id for r in outcome.requests if r.phase == "final" for c in r.combos]
    assert len(finals) == len(set(finals)) == 10 and outcome.stop_reason == "exhausted"


def test_random_judges_combinations_in_the_seed_order_as_finalists_batch_by_batch():
    search = spec(strategy="random", batch=4)
    outcome = strategies.run_search(search, World(), EMPTY)
    assert all(r.phase == "final" and r.draft_replicates == 3 for r in outcome.requests)
    assert [len(r.combos) for r in outcome.requests[:-1]] == [4] * (len(outcome.requests) - 1)
    tried = [c.combo_id for r in outcome.requests for c in r.combos]
    assert len(tried) == len(set(tried)) and planted_found(search, outcome)


def test_exhaustive_is_the_cube_in_one_round():
    search = spec(strategy="exhaustive")
    outcome = strategies.run_search(search, World(), EMPTY)
    assert [(r["phase"], r["candidates"], r["calls"]) for r in outcome.rows] == [("final", 56, cube_calls(search))]
    assert planted_found(search, outcome)


def test_beam_grows_the_best_by_one_concept_and_beats_halving_on_an_additive_effect():
    search = spec(strategy="beam", k_min=1, k_max=3, beam_width=2)
    outcome = strategies.run_search(search, World(additive_score), EMPTY)
    sizes = [(r.phase, r.combos[0].k, len(r.combos)) for r in outcome.requests]
    assert sizes[:3] == [("screen", 1, 8), ("screen", 2, 13), ("screen", 3, len(sizes) and sizes[2][2])]
    assert all(c.k == 3 for r in outcome.requests if r.phase == "final" for c in r.combos)
    assert planted_found(search, outcome)
    halving = strategies.run_search(spec(), World(additive_score), EMPTY)
    assert outcome.calls < halving.calls
