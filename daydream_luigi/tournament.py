"""A Swiss-system tournament of pairwise judgments, judged in both orders, rated by Bradley-Terry.

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
* Ratings: Bradley-Terry log-strengths, P(i beats j) = 1 / (1 + exp(r_j - r_i)), fitted by Newton's method with a
  tie counted as half a win for each side (as in pooled arena ratings; a Davidson tie parameter would need more
  matches than a 5-round Swiss gives per essay). Every essay also gets ``prior_matches`` virtual drawn matches
  against a fixed reference essay of rating 0, so an essay that won or lost everything keeps a finite rating and
  the scale is anchored: 0 is the reference, positive is better.
* Intervals: 95% Wald intervals from the observed Fisher information of that fit. A bootstrap over matches would
  ignore that Swiss pairings depend on earlier results, and on a few dozen matches its percentiles are coarse; the
  information matrix is exact for the model, deterministic, and cheap.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError
from .ids import gen_id

PAIRWISE_STAGE = "pairwise"  # the judgments' folder in the generation store: data/gens/pairwise/<judgment_id>/
VERDICTS = ("A", "B", "TIE")  # what the pairwise judge's WINNER line says: A = the essay shown first
WIN_POINTS, TIE_POINTS, BYE_POINTS = 1.0, 0.5, 0.5
PAIRING_SEARCH_BUDGET = 100_000  # pairs tried before a round gives up on a repeat-free pairing (deterministic)
Z_95 = 1.959963984540054

MATCH_COLUMNS = ["match_id", "round", "a", "b", "order", "judgment_id", "verdict", "winner", "match_winner"]
RATING_COLUMNS = ["gen_id", "rating", "ci_low", "ci_high", "wins", "losses", "ties"]


def judgment_id(first: str, second: str, texts_sha256: tuple[str, str], template_sha256: str, shape: Mapping,
                replicate: int = 1) -> str:
    """Content id of one pairwise judgment: the essays in the order shown (``first`` as A) with the sha256 of their
    texts, the template's text (its sha256) and everything else that shapes the judge's call (``shape``: model string,
    provider, sampling, as :func:`daydream_luigi.identity.call_shape` gives it).

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


def _checked_field(essay_ids: Sequence[str]) -> tuple[str, ...]:
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
        partner = next((k for k in range(tried + 1, len(remaining))
                        if frozenset((top, remaining[k])) not in played), None)
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
        stack.append((remaining[1:partner] + remaining[partner + 1:], 0))
    return None


def _greedy_pairs(ranked: Sequence[str], played: set[frozenset]) -> tuple[list, list]:
    """Down the ranking, each essay with the first lower-ranked unpaired essay it has not met; the rest sit out."""
    pairs, byes, taken = [], [], set()
    for i, essay in enumerate(ranked):
        if essay in taken:
            continue
        partner = next((other for other in ranked[i + 1:]
                        if other not in taken and frozenset((essay, other)) not in played), None)
        if partner is None:
            byes.append(essay)
        else:
            pairs.append((essay, partner))
            taken.add(partner)
        taken.add(essay)
    return pairs, byes


def pair_round(essay_ids: Sequence[str], matches: Sequence[Match], byes: Sequence[str], number: int,
               budget: int = PAIRING_SEARCH_BUDGET) -> Round:
    """The pairing of round `number` from the earlier rounds' `matches` and `byes` (one entry per bye given)."""
    ids = _checked_field(essay_ids)
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
    ids = _checked_field(essay_ids)
    if rounds < 1:
        raise InputError(f"tournament: --rounds must be at least 1, got {rounds}")
    played_rounds: list[Round] = []
    matches: list[Match] = []
    for number in range(1, rounds + 1):
        byes = [essay for past in played_rounds for essay in past.byes]
        pairing = pair_round(ids, matches, byes, number)
        if not pairing.pairs:
            return Tournament(ids, tuple(played_rounds), tuple(matches),
                              f"stopped after round {number - 1} of {rounds}: every pair of the "
                              f"{len(ids)} essays has already met")
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


# --------------------------------------------------------------------------- ratings


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact, and no overflow for large |x|


def _finite_without_prior(n: int, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> bool:
    """Whether the unregularised maximum exists: every essay reaches every other along "took at least half a
    point from" edges (the win graph is strongly connected; Zermelo's condition)."""
    beat = [set() for _ in range(n)]
    for a, b, score in zip(i.tolist(), j.tolist(), s.tolist()):
        if score > 0:
            beat[a].add(b)
        if score < 1:
            beat[b].add(a)
    beaten_by = [set() for _ in range(n)]
    for a in range(n):
        for b in beat[a]:
            beaten_by[b].add(a)

    def reach(edges: list[set]) -> int:
        seen, todo = {0}, [0]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return len(seen)

    return reach(beat) == n and reach(beaten_by) == n


def fit_bradley_terry(essay_ids: Sequence[str], matches: Sequence[Match], prior_matches: float = 1.0,
                      max_iterations: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Log-strengths (in `essay_ids` order) and their covariance (the inverse observed Fisher information).

    Judged matches only; a tie is half a win for each side. With ``prior_matches`` 0 there is no reference
    essay: ratings are centred on 0, the covariance is the pseudo-inverse under that constraint, and the maximum
    must exist (see :func:`_finite_without_prior`; else ValueError).
    """
    ids = list(essay_ids)
    index = {e: k for k, e in enumerate(ids)}
    judged = [m for m in matches if m.outcome != "none"]
    i = np.array([index[m.a] for m in judged], dtype=int)
    j = np.array([index[m.b] for m in judged], dtype=int)
    s = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[m.outcome] for m in judged])
    n = len(ids)

    def log_likelihood(r: np.ndarray) -> float:
        d = r[i] - r[j]
        ll = np.sum(s * -np.logaddexp(0.0, -d) + (1.0 - s) * -np.logaddexp(0.0, d))
        return float(ll + prior_matches * np.sum(-0.5 * np.logaddexp(0.0, -r) - 0.5 * np.logaddexp(0.0, r)))

    def gradient_and_information(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(r[i] - r[j])
        g = np.bincount(i, s - p, n) - np.bincount(j, s - p, n) + prior_matches * (0.5 - _sigmoid(r))
        w = p * (1.0 - p)
        info = np.zeros((n, n))
        np.add.at(info, (i, i), w)
        np.add.at(info, (j, j), w)
        np.add.at(info, (i, j), -w)
        np.add.at(info, (j, i), -w)
        q = _sigmoid(r)
        info[np.diag_indices(n)] += prior_matches * q * (1.0 - q)
        return g, info

    if prior_matches == 0 and not _finite_without_prior(n, i, j, s):
        raise ValueError("Bradley-Terry ratings without a prior do not exist: some group of essays won (or lost) "
                         "every match against the rest; use prior_matches > 0")
    solve = np.linalg.solve if prior_matches > 0 else lambda a, b: np.linalg.pinv(a) @ b
    r = np.zeros(n)
    current = log_likelihood(r)
    for _ in range(max_iterations):
        g, info = gradient_and_information(r)
        step = solve(info, g)
        if prior_matches == 0:
            step -= step.mean()
        scale = 1.0
        while scale >= 1e-6:  # halve the Newton step until it does not descend
            trial = r + scale * step
            value = log_likelihood(trial)
            if value >= current - 1e-12:
                r, current = trial, value
                break
            scale /= 2.0
        if scale < 1e-6 or np.max(np.abs(scale * step), initial=0.0) < 1e-10:
            break
    else:
        raise ValueError(f"Bradley-Terry ratings did not converge in {max_iterations} Newton steps")
    _, info = gradient_and_information(r)
    covariance = np.linalg.inv(info) if prior_matches > 0 else np.linalg.pinv(info)
    return r, covariance


def ratings_table(essay_ids: Sequence[str], matches: Sequence[Match], prior_matches: float = 1.0) -> pd.DataFrame:
    """reports/tournament_ratings.csv: one row per essay, best first (ties by gen_id), with 95% intervals and the
    essay's judged match record."""
    ids = _checked_field(essay_ids)
    ratings, covariance = fit_bradley_terry(ids, matches, prior_matches)
    half_width = Z_95 * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    record = {e: Counter() for e in ids}
    for match in matches:
        outcome = match.outcome
        if outcome == "tie":
            record[match.a]["ties"] += 1
            record[match.b]["ties"] += 1
        elif outcome in ("a", "b"):
            winner, loser = (match.a, match.b) if outcome == "a" else (match.b, match.a)
            record[winner]["wins"] += 1
            record[loser]["losses"] += 1
    table = pd.DataFrame({
        "gen_id": ids,
        "rating": ratings,
        "ci_low": ratings - half_width,
        "ci_high": ratings + half_width,
        "wins": [record[e]["wins"] for e in ids],
        "losses": [record[e]["losses"] for e in ids],
        "ties": [record[e]["ties"] for e in ids],
    }, columns=RATING_COLUMNS)
    table["_order"] = -table["rating"].round(12)  # ratings equal up to float noise sort by gen_id
    return table.sort_values(["_order", "gen_id"]).drop(columns="_order").reset_index(drop=True)


def _wilson(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z_95 ** 2
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
    return {"decisive_judgments": len(verdicts), "first_position_wins": first,
            "share": first / len(verdicts) if verdicts else math.nan, "ci_low": low, "ci_high": high}


def matches_table(matches: Sequence[Match], judgment_of: Callable[[str, str], str]) -> pd.DataFrame:
    """reports/tournament_matches.csv: one row per judgment, the (a, b) order first, then (b, a).

    ``judgment_of(first, second)`` is the judgment_id of that presentation. ``winner`` is the gen_id that judgment
    chose, 'tie', or '' when it had no verdict; ``match_winner`` is the match's outcome after both orders (gen_id,
    'tie', or '' when unjudged).
    """
    rows = []
    for m in matches:
        outcome = m.outcome
        match_winner = {"a": m.a, "b": m.b, "tie": "tie", "none": ""}[outcome]
        for order, first, second, verdict in (("ab", m.a, m.b, m.verdict_ab), ("ba", m.b, m.a, m.verdict_ba)):
            winner = {"A": first, "B": second, "TIE": "tie", None: ""}[verdict]
            rows.append({"match_id": m.match_id, "round": m.round, "a": m.a, "b": m.b, "order": order,
                         "judgment_id": judgment_of(first, second), "verdict": verdict or "", "winner": winner,
                         "match_winner": match_winner})
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def matches_from_table(table: pd.DataFrame) -> list[Match]:
    """The matches of a tournament_matches.csv read back (every column as text), in the table's order."""
    verdicts: dict[tuple[int, int, str, str], dict[str, str | None]] = {}
    for row in table.itertuples(index=False):
        number, index = (int(part) for part in str(row.match_id)[1:].split("m"))
        verdict = str(row.verdict) if isinstance(row.verdict, str) and row.verdict else None
        verdicts.setdefault((number, index, str(row.a), str(row.b)), {})[str(row.order)] = verdict
    return [Match(number, index, a, b, orders.get("ab"), orders.get("ba"))
            for (number, index, a, b), orders in verdicts.items()]


def describe_position_bias(bias: dict) -> str:
    """One sentence for the terminal and the report, from :func:`position_bias`."""
    if not bias["decisive_judgments"]:
        return "no judgment named a winner, so position bias cannot be measured"
    return (f"the essay shown first won {bias['first_position_wins']} of {bias['decisive_judgments']} decisive "
            f"judgments ({bias['share']:.0%}, 95% interval {bias['ci_low']:.0%} to {bias['ci_high']:.0%}); "
            f"50% is a judge without position bias")
