"""A Swiss-system tournament of pairwise judgments, judged in both orders (ratings and tables: `ratings`).

Pure functions over plain data, no Luigi and no HTTP. :func:`play_tournament` asks for one whole round of
judgments at a time (both presentation orders of every pair), so the caller can run them in parallel, as Luigi
tasks keyed by :func:`judgment_id`; every round is computed from the previous rounds' verdicts, so a second run
asks for exactly the same judgments again and finds them all kept.

Rules, each chosen to be simple to state and deterministic:

* Standings: a match won scores 1, a tie 0.5, a lost match 0. A bye (an essay left out of a round) and a match
  without a usable verdict score 0.5: neither is evidence for or against the essay, so it stays between what a win
  and a loss would have given it.
* Pairing: essays are ranked by points, ties by gen_id, and paired with the nearest-ranked essay they have not met
  (backtracking when that strands someone lower down). With an odd count, the bye goes to the essay with the fewest
  byes so far, the lowest-ranked among those, for which the rest can still be paired without a repeat.
* When no pairing without a repeat exists (small fields late in a tournament), the round pairs greedily down the
  ranking, each essay with the first lower-ranked essay it has not met; essays left without such a partner sit the
  round out as byes. A repeat would only re-read the same kept judgments and count them twice, so none is made.
  When not even one new pair exists, the tournament stops early and says so.
* A match's two judgments agree on a winner (A first, then B with the essays swapped) or the match is a tie; a
  judgment without a verdict makes the match unjudged (no rating evidence, 0.5 in the standings).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.ids import gen_id
from daydream_luigi.core.settings import PAIRWISE_STAGE

VERDICTS = ("A", "B", "TIE")  # what the pairwise judge's WINNER line says: A = the essay shown first
WIN_POINTS, TIE_POINTS, BYE_POINTS = 1.0, 0.5, 0.5
PAIRING_SEARCH_BUDGET = 100_000  # pairs tried before a round gives up on a repeat-free pairing (deterministic)
Z_95 = 1.959963984540054


def judgment_id(
    first: str, second: str, texts_sha256: tuple[str, str], template_sha256: str, shape: Mapping, replicate: int = 1
) -> str:
    """Content id of one pairwise judgment: the essays in the order shown (``first`` as A) with the sha256 of their
    texts, the template's text (its sha256) and everything else that shapes the judge's call (``shape``: model string,
    provider, sampling, as :func:`daydream_luigi.core.identity.call_shape` gives it).

    An essay made again with another text, an edited template or another judge makes new judgments, so a kept answer
    is never reused for another prompt. The parts are canonical JSON, so no two different inputs share a signature
    (a joined string could: ``"a__b" + "__" + "c"`` equals ``"a" + "__" + "b__c"``); the id is a gen_id of the
    pairwise stage and names the judgment's folder in the generation store like any other generation.
    """
    parts = {"first": first, "second": second, "texts": list(texts_sha256), "template": template_sha256, **shape}
    signature = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return gen_id(PAIRWISE_STAGE, signature, replicate)


def match_outcome(verdict_ab: str | None, verdict_ba: str | None) -> str:
    """'a', 'b', 'tie' or 'none' from the verdict with `a` shown first and the verdict with `b` shown first.

    A winner needs both orders to name it; any disagreement, or a TIE in either order, is a tie; a missing
    verdict (the judge's answer had no WINNER line) leaves the match unjudged ('none').
    """
    for verdict in (verdict_ab, verdict_ba):
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)} or None")
    if verdict_ab is None or verdict_ba is None:
        return "none"
    if (verdict_ab, verdict_ba) == ("A", "B"):
        return "a"
    if (verdict_ab, verdict_ba) == ("B", "A"):
        return "b"
    return "tie"


@dataclass(frozen=True)
class Match:
    """Two essays judged in both orders: `a` first (verdict_ab), then `b` first (verdict_ba)."""

    round: int
    index: int  # 1-based position in its round's pairing
    a: str  # the higher-ranked essay when the round was paired
    b: str
    verdict_ab: str | None
    verdict_ba: str | None

    @property
    def match_id(self) -> str:
        return f"r{self.round}m{self.index}"

    @property
    def outcome(self) -> str:
        return match_outcome(self.verdict_ab, self.verdict_ba)


@dataclass(frozen=True)
class Round:
    """The pairing of one round: (higher-ranked, lower-ranked) pairs and the essays that sit it out."""

    number: int
    pairs: tuple[tuple[str, str], ...]
    byes: tuple[str, ...]
    greedy_fallback: bool  # True when no full pairing without a repeat was found (see the module docstring)


@dataclass(frozen=True)
class Tournament:
    essay_ids: tuple[str, ...]
    rounds: tuple[Round, ...]
    matches: tuple[Match, ...]
    stopped_early: str | None  # why fewer rounds than asked were played, else None


def checked_field(essay_ids: Sequence[str]) -> tuple[str, ...]:
    ids = tuple(essay_ids)
    duplicates = sorted(e for e, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise InputError(f"tournament: essay {duplicates[0]!r} is listed twice; list each essay once")
    if len(ids) < 2:
        raise InputError(f"tournament: needs at least 2 essays, got {len(ids)}; run the cohort's essays first")
    return ids


def standings(essay_ids: Sequence[str], matches: Sequence[Match], byes: Sequence[str]) -> dict[str, float]:
    """Points per essay: win 1, tie 0.5, loss 0; a bye or an unjudged match 0.5."""
    points = dict.fromkeys(essay_ids, 0.0)
    for match in matches:
        outcome = match.outcome
        points[match.a] += WIN_POINTS if outcome == "a" else 0.0 if outcome == "b" else TIE_POINTS
        points[match.b] += WIN_POINTS if outcome == "b" else 0.0 if outcome == "a" else TIE_POINTS
    for essay in byes:
        points[essay] += BYE_POINTS
    return points


class _BudgetSpent(Exception):
    pass


def _pair_without_repeats(ranked: Sequence[str], played: set[frozenset], budget: list[int]) -> list | None:
    """Pairs of the whole `ranked` list (even length), none in `played`, each essay with the nearest-ranked
    partner that still lets everyone below be paired; None when no such pairing exists.

    Iterative depth-first search (a field of thousands would exceed Python's recursion limit); `budget` is a
    one-item list of pair placements left, shared by the calls of one round.
    """
    stack = [(tuple(ranked), 0)]  # (essays still unpaired, index of the partner tried for the first of them)
    pairs: list[tuple[str, str]] = []
    while stack:
        remaining, tried = stack[-1]
        if not remaining:
            return pairs
        top = remaining[0]
        partner = next(
            (k for k in range(tried + 1, len(remaining)) if frozenset((top, remaining[k])) not in played), None
        )
        if partner is None:
            stack.pop()
            if stack:
                pairs.pop()
            continue
        budget[0] -= 1
        if budget[0] < 0:
            raise _BudgetSpent
        stack[-1] = (remaining, partner)
        pairs.append((top, remaining[partner]))
        stack.append((remaining[1:partner] + remaining[partner + 1 :], 0))
    return None


def _greedy_pairs(ranked: Sequence[str], played: set[frozenset]) -> tuple[list, list]:
    """Down the ranking, each essay with the first lower-ranked unpaired essay it has not met; the rest sit out."""
    pairs, byes, taken = [], [], set()
    for i, essay in enumerate(ranked):
        if essay in taken:
            continue
        partner = next(
            (other for other in ranked[i + 1 :] if other not in taken and frozenset((essay, other)) not in played), None
        )
        if partner is None:
            byes.append(essay)
        else:
            pairs.append((essay, partner))
            taken.add(partner)
        taken.add(essay)
    return pairs, byes


def pair_round(
    essay_ids: Sequence[str],
    matches: Sequence[Match],
    byes: Sequence[str],
    number: int,
    budget: int = PAIRING_SEARCH_BUDGET,
) -> Round:
    """The pairing of round `number` from the earlier rounds' `matches` and `byes` (one entry per bye given)."""
    ids = checked_field(essay_ids)
    points = standings(ids, matches, byes)
    ranked = sorted(ids, key=lambda e: (-points[e], e))
    played = {frozenset((m.a, m.b)) for m in matches}
    left = [budget]
    try:
        if len(ranked) % 2 == 0:
            pairs = _pair_without_repeats(ranked, played, left)
            if pairs is not None:
                return Round(number, tuple(pairs), (), False)
        else:
            bye_counts = Counter(byes)
            position = {e: i for i, e in enumerate(ranked)}
            for bye in sorted(ranked, key=lambda e: (bye_counts[e], -position[e])):
                pairs = _pair_without_repeats([e for e in ranked if e != bye], played, left)
                if pairs is not None:
                    return Round(number, tuple(pairs), (bye,), False)
    except _BudgetSpent:
        pass
    pairs, sitting_out = _greedy_pairs(ranked, played)
    return Round(number, tuple(pairs), tuple(sitting_out), True)


JudgeRound = Callable[[list[tuple[str, str]]], list[str | None]]


def play_tournament(essay_ids: Sequence[str], rounds: int, judge_round: JudgeRound) -> Tournament:
    """Play up to `rounds` Swiss rounds; `judge_round` gets every (first, second) presentation of a round at
    once, the pairs in pairing order and then the same pairs swapped, and returns one verdict each
    ('A', 'B', 'TIE', or None when the judge's answer had no verdict)."""
    ids = checked_field(essay_ids)
    if rounds < 1:
        raise InputError(f"tournament: --rounds must be at least 1, got {rounds}")
    played_rounds: list[Round] = []
    matches: list[Match] = []
    for number in range(1, rounds + 1):
        byes = [essay for past in played_rounds for essay in past.byes]
        pairing = pair_round(ids, matches, byes, number)
        if not pairing.pairs:
            return Tournament(
                ids,
                tuple(played_rounds),
                tuple(matches),
                f"stopped after round {number - 1} of {rounds}: every pair of the {len(ids)} essays has already met",
            )
        presented = list(pairing.pairs) + [(b, a) for a, b in pairing.pairs]
        verdicts = list(judge_round(presented))
        if len(verdicts) != len(presented):
            raise ValueError(f"judge_round returned {len(verdicts)} verdicts for {len(presented)} judgments")
        n = len(pairing.pairs)
        judged = [Match(number, k + 1, a, b, verdicts[k], verdicts[n + k]) for k, (a, b) in enumerate(pairing.pairs)]
        for match in judged:
            match.outcome  # noqa: B018 (raises ValueError now for a verdict that is not A, B, TIE or None)
        matches += judged
        played_rounds.append(pairing)
    return Tournament(ids, tuple(played_rounds), tuple(matches), None)


def _wilson(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z_95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def position_bias(matches: Sequence[Match]) -> dict:
    """Share of the decisive single judgments (A or B, not TIE or missing) won by the essay shown first.

    An unbiased judge that is consistent across orders gives exactly 0.5: each of its decisive matches adds one
    A and one B. ``ci_low``/``ci_high`` is the 95% Wilson interval of the share.
    """
    verdicts = [v for m in matches for v in (m.verdict_ab, m.verdict_ba) if v in ("A", "B")]
    first = verdicts.count("A")
    low, high = _wilson(first, len(verdicts))
    return {
        "decisive_judgments": len(verdicts),
        "first_position_wins": first,
        "share": first / len(verdicts) if verdicts else math.nan,
        "ci_low": low,
        "ci_high": high,
    }


def describe_position_bias(bias: dict) -> str:
    """One sentence for the terminal and the report, from :func:`position_bias`."""
    if not bias["decisive_judgments"]:
        return "no judgment named a winner, so position bias cannot be measured"
    return (
        f"the essay shown first won {bias['first_position_wins']} of {bias['decisive_judgments']} decisive "
        f"judgments ({bias['share']:.0%}, 95% interval {bias['ci_low']:.0%} to {bias['ci_high']:.0%}); "
        f"50% is a judge without position bias"
    )
