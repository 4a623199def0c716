"""Bradley-Terry ratings of a tournament's essays with intervals, and the tournament's tables.

Apart from `tournament` (pairing, outcomes, position bias: plain Python) because numpy and pandas have no place in
the process that schedules the judgments: every module Luigi's worker process imports makes each task process it forks
slower to start.

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

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from daydream_luigi.analysis.tournament import Z_95, Match, checked_field

MATCH_COLUMNS = ["match_id", "round", "a", "b", "order", "judgment_id", "verdict", "winner", "match_winner"]
RATING_COLUMNS = ["gen_id", "rating", "ci_low", "ci_high", "wins", "losses", "ties"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact, and no overflow for large |x|


def _finite_without_prior(n: int, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> bool:
    """Whether the unregularised maximum exists: every essay reaches every other along "took at least half a
    point from" edges (the win graph is strongly connected; Zermelo's condition)."""
    beat: list[set[int]] = [set() for _ in range(n)]
    for a, b, score in zip(i.tolist(), j.tolist(), s.tolist()):
        if score > 0:
            beat[a].add(b)
        if score < 1:
            beat[b].add(a)
    beaten_by: list[set[int]] = [set() for _ in range(n)]
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


def fit_bradley_terry(
    essay_ids: Sequence[str], matches: Sequence[Match], prior_matches: float = 1.0, max_iterations: int = 200
) -> tuple[np.ndarray, np.ndarray]:
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
        raise ValueError(
            "Bradley-Terry ratings without a prior do not exist: some group of essays won (or lost) "
            "every match against the rest; use prior_matches > 0"
        )
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
    ids = checked_field(essay_ids)
    ratings, covariance = fit_bradley_terry(ids, matches, prior_matches)
    half_width = Z_95 * np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    record: dict[str, Counter[str]] = {e: Counter() for e in ids}
    for match in matches:
        outcome = match.outcome
        if outcome == "tie":
            record[match.a]["ties"] += 1
            record[match.b]["ties"] += 1
        elif outcome in ("a", "b"):
            winner, loser = (match.a, match.b) if outcome == "a" else (match.b, match.a)
            record[winner]["wins"] += 1
            record[loser]["losses"] += 1
    table = pd.DataFrame(
        {
            "gen_id": ids,
            "rating": ratings,
            "ci_low": ratings - half_width,
            "ci_high": ratings + half_width,
            "wins": [record[e]["wins"] for e in ids],
            "losses": [record[e]["losses"] for e in ids],
            "ties": [record[e]["ties"] for e in ids],
        },
        columns=RATING_COLUMNS,
    )
    table["_order"] = -table["rating"].round(12)  # ratings equal up to float noise sort by gen_id
    return table.sort_values(["_order", "gen_id"]).drop(columns="_order").reset_index(drop=True)


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
            rows.append(
                {
                    "match_id": m.match_id,
                    "round": m.round,
                    "a": m.a,
                    "b": m.b,
                    "order": order,
                    "judgment_id": judgment_of(first, second),
                    "verdict": verdict or "",
                    "winner": winner,
                    "match_winner": match_winner,
                }
            )
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def matches_from_table(table: pd.DataFrame) -> list[Match]:
    """The matches of a tournament_matches.csv read back (every column as text), in the table's order."""
    verdicts: dict[tuple[int, int, str, str], dict[str, str | None]] = {}
    for row in table.itertuples(index=False):
        number, index = (int(part) for part in str(row.match_id)[1:].split("m"))
        verdict = str(row.verdict) if isinstance(row.verdict, str) and row.verdict else None
        verdicts.setdefault((number, index, str(row.a), str(row.b)), {})[str(row.order)] = verdict
    return [
        Match(number, index, a, b, orders.get("ab"), orders.get("ba"))
        for (number, index, a, b), orders in verdicts.items()
    ]
