"""The Swiss tournament core: pairings, position swaps, Bradley-Terry ratings, position bias, judgment ids."""

from __future__ import annotations

import io
import math
import random
from collections import Counter
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest
from jinja2 import meta

from daydream_luigi.analysis import ratings as r
from daydream_luigi.analysis import tournament as t
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.ids import gen_id
from daydream_luigi.core.render import render

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_SHA = "ab" * 32  # a pairwise template's sha256
TEXTS = ("01" * 32, "23" * 32)  # the sha256 of the two essays' texts
SHAPE = {"model": "vendor/judge-model", "provider": "openrouter", "temperature": 0.3, "max_tokens": 300}
ESSAYS = [gen_id("essay", f"fixture-essay-{k}", 1) for k in range(8)]
PLANTED = sorted(ESSAYS)[5]  # neither first nor last by gen_id, so tie-breaks cannot put it on top
QUALITY = {e: k for k, e in enumerate(sorted(ESSAYS, key=lambda e: gen_id("x", e, 1)))}  # a hidden order
QUALITY[PLANTED] = 100


class Judge:
    """A fake pairwise judge behind a cache keyed by judgment id, as the Luigi tasks will be."""

    def __init__(self, quality: dict[str, int] = QUALITY, position_bias: float = 0.0):
        self.quality = quality
        self.kept: dict[str, str] = {}
        self.calls: Counter = Counter()  # (first, second) -> model calls
        self.position_bias = position_bias

    def verdict(self, first: str, second: str) -> str:
        key = t.judgment_id(first, second, TEXTS, TEMPLATE_SHA, SHAPE)
        if random.Random(key).random() < self.position_bias:
            return "A"
        return "A" if self.quality[first] > self.quality[second] else "B"

    def __call__(self, presented):
        verdicts = []
        for first, second in presented:
            key = t.judgment_id(first, second, TEXTS, TEMPLATE_SHA, SHAPE)
            if key not in self.kept:
                self.calls[(first, second)] += 1
                self.kept[key] = self.verdict(first, second)
            verdicts.append(self.kept[key])
        return verdicts


def test_planted_best_essay_is_rated_first_without_repeats_and_with_every_match_judged_in_both_orders():
    judge = Judge()
    played = t.play_tournament(ESSAYS, 5, judge)
    assert played.stopped_early is None and len(played.rounds) == 5 and len(played.matches) == 20
    assert len({frozenset((m.a, m.b)) for m in played.matches}) == 20
    assert set(judge.calls) == {(m.a, m.b) for m in played.matches} | {(m.b, m.a) for m in played.matches}
    assert set(judge.calls.values()) == {1}
    ratings = r.ratings_table(ESSAYS, played.matches)
    assert list(ratings.columns) == ["gen_id", "rating", "ci_low", "ci_high", "wins", "losses", "ties"]
    assert ratings.iloc[0][["gen_id", "wins", "losses", "ties"]].tolist() == [PLANTED, 5, 0, 0]
    assert (ratings["ci_low"] < ratings["rating"]).all() and (ratings["rating"] < ratings["ci_high"]).all()
    assert ratings["rating"].is_monotonic_decreasing
    assert t.position_bias(played.matches) == {
        "decisive_judgments": 40,
        "first_position_wins": 20,
        "share": 0.5,
        "ci_low": pytest.approx(0.352, abs=1e-3),
        "ci_high": pytest.approx(0.648, abs=1e-3),
    }


def test_the_same_verdicts_give_the_same_tournament_whatever_the_input_order_and_a_rerun_calls_nobody():
    judge = Judge()
    first = t.play_tournament(ESSAYS, 5, judge)
    calls = sum(judge.calls.values())
    again = t.play_tournament(list(reversed(ESSAYS)), 5, judge)
    assert sum(judge.calls.values()) == calls == 40
    assert again.matches == first.matches and again.rounds == first.rounds
    fresh = t.play_tournament(ESSAYS, 5, Judge())
    pd.testing.assert_frame_equal(
        r.matches_table(fresh.matches, _judgment_of), r.matches_table(first.matches, _judgment_of)
    )
    pd.testing.assert_frame_equal(r.ratings_table(ESSAYS, fresh.matches), r.ratings_table(ESSAYS, first.matches))


def test_a_position_biased_judge_shows_its_bias_and_its_disagreements_become_ties():
    field = [gen_id("essay", f"biased-field-{k}", 1) for k in range(16)]
    played = t.play_tournament(field, 5, Judge({e: k for k, e in enumerate(field)}, position_bias=0.6))
    bias = t.position_bias(played.matches)
    expected = 0.6 + 0.4 * 0.5  # forced A answers, plus half of the honest ones
    assert bias["decisive_judgments"] == 80
    assert abs(bias["share"] - expected) < 0.1 and bias["ci_low"] < expected < bias["ci_high"]
    ties = sum(m.outcome == "tie" for m in played.matches)
    assert ties == sum((m.verdict_ab, m.verdict_ba) == ("A", "A") for m in played.matches) > 0


def test_round_one_pairs_neighbours_by_gen_id_and_round_two_pairs_by_standing():
    ranked = sorted(ESSAYS)
    one = t.pair_round(ESSAYS, [], [], 1)
    assert one == t.Round(1, tuple(zip(ranked[0::2], ranked[1::2])), (), False)
    matches = [t.Match(1, k + 1, a, b, "A", "B") for k, (a, b) in enumerate(one.pairs)]  # `a` always wins
    winners, losers = sorted(ranked[0::2]), sorted(ranked[1::2])
    two = t.pair_round(ESSAYS, matches, [], 2)
    assert two.pairs == tuple(zip(winners[0::2], winners[1::2])) + tuple(zip(losers[0::2], losers[1::2]))


def test_a_repeat_is_avoided_by_pairing_the_next_neighbour():
    a, b, c, d = "a", "b", "c", "d"
    matches = [t.Match(1, 1, a, b, "A", "B"), t.Match(1, 2, c, d, "A", "B")]
    # standings a 1, c 1, b 0, d 0: a-c and b-d are the neighbours and neither has met
    assert t.pair_round([a, b, c, d], matches, [], 2).pairs == ((a, c), (b, d))
    matches += [t.Match(2, 1, a, c, "A", "B"), t.Match(2, 2, b, d, "A", "B")]
    # standings a 2, b 1, c 1, d 0: a has met b and c, so a-d, then b-c
    assert t.pair_round([a, b, c, d], matches, [], 3) == t.Round(3, ((a, d), (b, c)), (), False)


def test_an_odd_field_gives_each_bye_to_the_lowest_ranked_essay_without_one():
    field = [f"e{k}" for k in range(5)]
    judge = lambda presented: ["A" if f < s else "B" for f, s in presented]  # noqa: E731 (lower id wins)
    played = t.play_tournament(field, 5, judge)
    assert [r.byes for r in played.rounds] == [("e4",), ("e3",), ("e2",), ("e1",), ("e0",)]
    assert all(not r.greedy_fallback for r in played.rounds)
    assert t.standings(field, played.matches, ["e4", "e3", "e2", "e1", "e0"]) == {
        "e0": 4.5,
        "e1": 3.5,
        "e2": 2.5,
        "e3": 1.5,
        "e4": 0.5,
    }


def test_small_fields_play_until_every_pair_has_met_then_stop_and_say_so():
    ties = lambda presented: ["TIE"] * len(presented)  # noqa: E731
    three = t.play_tournament(["x", "y", "z"], 5, ties)
    assert [(r.pairs, r.byes) for r in three.rounds] == [
        ((("x", "y"),), ("z",)),
        ((("x", "z"),), ("y",)),
        ((("y", "z"),), ("x",)),
    ]
    assert three.stopped_early == "stopped after round 3 of 5: every pair of the 3 essays has already met"
    two = t.play_tournament(["p", "q"], 3, ties)
    assert len(two.matches) == 1
    assert two.stopped_early == "stopped after round 1 of 3: every pair of the 2 essays has already met"


def test_without_a_repeat_free_pairing_the_round_pairs_greedily_and_the_rest_sit_out():
    matches = [t.Match(r, 1, "a", other, "A", "B") for r, other in ((1, "b"), (2, "c"), (3, "d"))]
    assert t.pair_round(["a", "b", "c", "d"], matches, [], 4) == t.Round(4, (("b", "c"),), ("a", "d"), True)
    assert t.pair_round(["a", "b", "c", "d"], [], [], 1, budget=0) == t.Round(1, (("a", "b"), ("c", "d")), (), True)


@pytest.mark.parametrize(
    "ab, ba, outcome",
    [
        ("A", "B", "a"),
        ("B", "A", "b"),
        ("A", "A", "tie"),
        ("B", "B", "tie"),
        ("TIE", "TIE", "tie"),
        ("A", "TIE", "tie"),
        ("TIE", "B", "tie"),
        (None, "B", "none"),
        ("A", None, "none"),
        (None, None, "none"),
    ],
)
def test_match_outcome_needs_both_orders_to_agree(ab, ba, outcome):
    assert t.match_outcome(ab, ba) == outcome


def test_match_outcome_rejects_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict 'a' is not one of A, B, TIE or None"):
        t.match_outcome("a", "B")


def _judgment_of(first: str, second: str) -> str:
    return t.judgment_id(first, second, TEXTS, TEMPLATE_SHA, SHAPE)


def test_judgment_ids_cover_what_shapes_the_call_and_are_unambiguous():
    signature = (
        '{"first":"e1","max_tokens":300,"model":"vendor/judge-model","provider":"openrouter",'
        f'"second":"e2","temperature":0.3,"template":"{TEMPLATE_SHA}","texts":["{TEXTS[0]}","{TEXTS[1]}"]}}'
    )
    assert t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, SHAPE) == gen_id("pairwise", signature, 1)
    assert t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, SHAPE) == "vds5ya4ghki0ducb"  # kept ones are found by it
    variants = {
        t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, SHAPE),
        t.judgment_id("e2", "e1", TEXTS, TEMPLATE_SHA, SHAPE),
        t.judgment_id("e1", "e2", (TEXTS[0], "45" * 32), TEMPLATE_SHA, SHAPE),  # an essay made again
        t.judgment_id("e1", "e2", TEXTS, "cd" * 32, SHAPE),  # an edited template
        t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, {**SHAPE, "model": "vendor/other"}),  # another judge
        t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, {**SHAPE, "temperature": 0.0}),
        t.judgment_id("e1", "e2", TEXTS, TEMPLATE_SHA, SHAPE, replicate=2),
        t.judgment_id("a__b", "c", TEXTS, "t", {}),
        t.judgment_id("a", "b__c", TEXTS, "t", {}),
        t.judgment_id('a","second":"b', "c", TEXTS, "t", {}),
        t.judgment_id("a", 'b","second":"c', TEXTS, "t", {}),
    }
    assert len(variants) == 11


def test_matches_table_has_one_row_per_judgment_and_reads_back_into_the_same_matches():
    matches = [
        t.Match(1, 1, "x", "y", "A", "A"),
        t.Match(2, 1, "x", "z", "B", "A"),
        t.Match(3, 1, "y", "z", None, "TIE"),
    ]
    table = r.matches_table(matches, _judgment_of)
    assert list(table.columns) == r.MATCH_COLUMNS
    ids = [_judgment_of(f, s) for f, s in (("x", "y"), ("y", "x"), ("x", "z"), ("z", "x"), ("y", "z"), ("z", "y"))]
    assert table.drop(columns="judgment_id").values.tolist() == [
        ["r1m1", 1, "x", "y", "ab", "A", "x", "tie"],
        ["r1m1", 1, "x", "y", "ba", "A", "y", "tie"],
        ["r2m1", 2, "x", "z", "ab", "B", "z", "z"],
        ["r2m1", 2, "x", "z", "ba", "A", "z", "z"],
        ["r3m1", 3, "y", "z", "ab", "", "", ""],
        ["r3m1", 3, "y", "z", "ba", "TIE", "tie", ""],
    ]
    assert table["judgment_id"].tolist() == ids
    written = pd.read_csv(io.StringIO(table.to_csv(index=False)), dtype=str, keep_default_na=False)
    assert r.matches_from_table(written) == matches


def test_position_bias_is_described_in_one_sentence():
    matches = [
        t.Match(1, 1, "x", "y", "A", "A"),
        t.Match(2, 1, "x", "z", "B", "A"),
        t.Match(3, 1, "y", "z", None, "TIE"),
    ]
    assert t.describe_position_bias(t.position_bias(matches)) == (
        "the essay shown first won 3 of 4 decisive judgments (75%, 95% interval 30% to 95%); 50% is a judge without "
        "position bias"
    )
    assert (
        t.describe_position_bias(t.position_bias(matches[2:]))
        == "no judgment named a winner, so position bias cannot be measured"
    )


def _results(*pairs_and_outcomes):
    """Matches from (a, b, outcome, count) tuples."""
    verdicts = {"a": ("A", "B"), "b": ("B", "A"), "tie": ("TIE", "TIE")}
    return [
        t.Match(1, k, a, b, *verdicts[outcome])
        for k, (a, b, outcome, count) in enumerate(pairs_and_outcomes)
        for _ in range(count)
    ]


def test_bradley_terry_on_a_hand_checked_three_player_case():
    # Strengths 4 : 2 : 1 predict A over B 2/3, B over C 2/3, A over C 4/5; these counts match exactly, so the
    # maximum-likelihood log-strengths are ln 4, ln 2, ln 1 up to a constant: centred, (ln 2, 0, -ln 2).
    matches = _results(
        ("A", "B", "a", 2),
        ("A", "B", "b", 1),
        ("B", "C", "a", 2),
        ("B", "C", "b", 1),
        ("A", "C", "a", 4),
        ("A", "C", "b", 1),
    )
    ratings, covariance = r.fit_bradley_terry(["A", "B", "C"], matches, prior_matches=0)
    assert ratings == pytest.approx([math.log(2), 0.0, -math.log(2)], abs=1e-9)
    # Fisher information = a graph Laplacian with conductance n p (1 - p) per pair: A-B 3 * 2/9, B-C 3 * 2/9,
    # A-C 5 * 4/25; Var(r_A - r_C) is the effective resistance A-C: 1 / (1/3 + 4/5) = 15/17.
    contrast = np.array([1.0, 0.0, -1.0])
    assert contrast @ covariance @ contrast == pytest.approx(15 / 17, abs=1e-9)


def test_a_tie_counts_as_half_a_win_for_each_side():
    split = r.fit_bradley_terry(["A", "B", "C"], _results(("A", "B", "a", 1), ("A", "B", "b", 1), ("B", "C", "a", 1)))
    tied = r.fit_bradley_terry(["A", "B", "C"], _results(("A", "B", "tie", 2), ("B", "C", "a", 1)))
    assert split[0] == pytest.approx(tied[0], abs=1e-12)


def test_an_essay_that_won_everything_gets_a_finite_shrunk_rating_and_unjudged_matches_are_ignored():
    matches = _results(("A", "B", "a", 3), ("A", "C", "a", 2)) + [t.Match(2, 9, "B", "C", None, "A")]
    table = r.ratings_table(["A", "B", "C"], matches)
    assert table["gen_id"].tolist() == ["A", "C", "B"]  # C lost fewer matches than B
    top = table.iloc[0]
    assert top[["gen_id", "wins", "losses", "ties"]].tolist() == ["A", 5, 0, 0]
    assert 0 < top["rating"] < 10 and math.isfinite(top["ci_high"])
    assert table.set_index("gen_id").loc[["B", "C"], ["wins", "losses", "ties"]].values.tolist() == [
        [0, 3, 0],
        [0, 2, 0],
    ]
    with pytest.raises(ValueError, match=r"some group of essays won \(or lost\) every match against the rest"):
        r.fit_bradley_terry(["A", "B", "C"], matches, prior_matches=0)


def test_position_bias_without_decisive_judgments_is_undefined():
    bias = t.position_bias([t.Match(1, 1, "x", "y", "TIE", None)])
    assert bias["decisive_judgments"] == 0 and math.isnan(bias["share"]) and math.isnan(bias["ci_low"])


@pytest.mark.parametrize(
    "essays, rounds, message",
    [
        (["a", "b", "a"], 3, "tournament: essay 'a' is listed twice; list each essay once"),
        (["a"], 3, "tournament: needs at least 2 essays, got 1; run the cohort's essays first"),
        (["a", "b"], 0, "tournament: --rounds must be at least 1, got 0"),
    ],
)
def test_bad_fields_are_input_errors(essays, rounds, message):
    with pytest.raises(InputError) as info:
        t.play_tournament(essays, rounds, lambda presented: ["TIE"] * len(presented))
    assert str(info.value) == message


def test_the_shipped_pairwise_template_takes_two_essays_and_asks_for_the_winner_line():
    source = (REPO / "data/1_raw/generation_templates/pairwise/pairwise-novelty.txt").read_text()
    env = jinja2.Environment()
    assert meta.find_undeclared_variables(env.parse(source)) == {"essay_a", "essay_b"}
    prompt = render(source, essay_a="FIRST ESSAY TEXT", essay_b="SECOND ESSAY TEXT")
    assert prompt.index("FIRST ESSAY TEXT") < prompt.index("SECOND ESSAY TEXT")
    assert prompt.rstrip().splitlines()[-5:-1] == [
        "line, and nothing after it, chosen from:",
        "WINNER: A",
        "WINNER: B",
        "WINNER: TIE",
    ]
    catalog = pd.read_csv(REPO / "data/1_raw/pairwise_templates.csv", dtype=str)
    assert catalog[["template_id", "active", "parser"]].values.tolist() == [["pairwise-novelty", "true", "winner"]]
