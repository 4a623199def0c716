"""A gate's decision over the parsed-scores table: per essay, every criterion's value and `pass` or why not.

Scores are read as the table holds them: every score parser already maps a judge's verdict onto 0..10 (a 4/5 is
stored as 8, a `VERDICT: YES` as 10) and ``score_max`` is 10 on every row, so a gate's ``min`` is on that scale.

Per essay and criterion (its evaluation template), over the essay's scored evaluations of that template (every judge
and replicate counts once, an evaluation listed under several cohorts once): ``n``, the mean, the 95% Student t
interval of the mean (:func:`intervals.t_interval`, the interval of every other table), ``judges`` (distinct judges) and
``judge_range`` (max - min of the judges' own means over their replicates; 0 for one judge). The criterion's
``value`` is the mean (``by: mean``) or the interval's low end (``by: lower-bound``).

An essay passes when every criterion holds. Otherwise its decision is the FIRST failing check, taking the criteria in
the file's order and, within a criterion, the checks in this order:

1. ``no scores``: no scored evaluation of the template;
2. ``1 judge(s), needs 2``: fewer distinct judges than ``min_judges``;
3. ``judges' means differ by 4.00 > 3``: a range above ``max_judge_range`` (when the gate sets one);
4. ``no interval (n=1); a lower bound needs 2 scores or more`` (``by: lower-bound`` only);
5. ``lower bound 6.80 < 7`` / ``mean 5.50 < 6``: the value below ``min`` (``value >= min`` passes).

Each reason is prefixed with the template (``novelty-judge: 1 judge(s), needs 2``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from daydream_luigi.analysis import agreement, intervals
from daydream_luigi.analysis.scores import ConceptMap
from daydream_luigi.core.gates import Criterion, Gate

PASS = "pass"
CRITERION_STATISTICS = ("value", "ci_low", "ci_high", "n", "judges", "judge_range")


def criterion_columns(template: str) -> list[str]:
    return [f"{template}:{name}" for name in CRITERION_STATISTICS]


def gate_columns(gate: Gate) -> list[str]:
    """The columns of :func:`decide`: ``gen_id``, ``decision``, then each criterion's statistics in the file's order."""
    return ["gen_id", "decision", *(c for criterion in gate.criteria for c in criterion_columns(criterion.template))]


def _at_most(value: float, limit: float) -> bool:
    """value <= limit, with float rounding forgiven (a mean of 6.9 and 7.1 is 7)."""
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-9)


def scored_evaluations(scores: pd.DataFrame) -> pd.DataFrame:
    """The scored rows with an essay, each evaluation once (a cross-cohort table lists it per cohort)."""
    df = scores.assign(score=pd.to_numeric(scores["score"], errors="coerce"))
    df = df[df["score"].notna() & df["parent_gen_id"].notna()]
    return pd.concat([df[df["gen_id"].notna()].drop_duplicates("gen_id"), df[df["gen_id"].isna()]], ignore_index=True)


def criterion_statistics(scored: pd.DataFrame, criterion: Criterion) -> pd.DataFrame:
    """Per essay with a score for the criterion's template: n, mean, sd, ci_low, ci_high, judges, judge_range, value."""
    rows = scored[scored["evaluation_template"] == criterion.template]
    by_essay = rows.groupby("parent_gen_id", sort=True)["score"]
    stats = pd.DataFrame({"n": by_essay.size(), "mean": by_essay.mean(), "sd": by_essay.std(ddof=1)})
    stats["ci_low"], stats["ci_high"] = intervals.t_interval(stats["n"], stats["mean"], stats["sd"])
    judge_means = rows.groupby(["parent_gen_id", "evaluation_model"], sort=True)["score"].mean().groupby(level=0)
    stats["judges"] = judge_means.size()
    stats["judge_range"] = judge_means.max() - judge_means.min()
    stats["value"] = stats["mean"] if criterion.by == "mean" else stats["ci_low"]
    return stats


def _reason(criterion: Criterion, gate: Gate, row: dict | None) -> str | None:
    """The first failing check of one criterion for one essay (its statistics, None without a score), in the order
    of the module docstring; None when the criterion holds."""
    if row is None:
        return "no scores"
    if row["judges"] < gate.min_judges:
        return f"{int(row['judges'])} judge(s), needs {gate.min_judges}"
    if gate.max_judge_range is not None and not _at_most(row["judge_range"], gate.max_judge_range):
        return f"judges' means differ by {row['judge_range']:.2f} > {gate.max_judge_range:g}"
    if math.isnan(row["value"]):
        return f"no interval (n={int(row['n'])}); a lower bound needs 2 scores or more"
    if not _at_most(criterion.min, row["value"]):
        label = "mean" if criterion.by == "mean" else "lower bound"
        return f"{label} {row['value']:.2f} < {criterion.min:g}"
    return None


def decide(scores: pd.DataFrame, gate: Gate, essays: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per essay (``essays`` in that order, default: every essay of ``scores``, sorted) with the columns of
    :func:`gate_columns`; ``decision`` is ``pass`` or the first failing reason (see the module docstring).

    An essay of ``essays`` without any row in ``scores`` is decided too (``no scores`` on the first criterion), so a
    cohort's every essay is explained."""
    scored = scored_evaluations(scores)
    if essays is None:
        essays = sorted({str(e) for e in scores["parent_gen_id"].dropna()})
    essays = [str(e) for e in essays]
    statistics = [criterion_statistics(scored, criterion) for criterion in gate.criteria]
    table: dict[str, Any] = {"gen_id": essays, "decision": []}
    for criterion, stats in zip(gate.criteria, statistics):
        aligned = stats.reindex(essays)
        for name in CRITERION_STATISTICS:
            table[f"{criterion.template}:{name}"] = aligned[name].to_numpy()
    by_essay = [stats.to_dict("index") for stats in statistics]
    for essay in essays:
        decision = PASS
        for criterion, rows in zip(gate.criteria, by_essay):
            reason = _reason(criterion, gate, rows.get(essay))
            if reason is not None:
                decision = f"{criterion.template}: {reason}"
                break
        table["decision"].append(decision)
    out = pd.DataFrame(table, columns=gate_columns(gate))
    for criterion in gate.criteria:
        for name in ("n", "judges"):
            column = f"{criterion.template}:{name}"
            out[column] = out[column].fillna(0).astype("int64")
    return out


def passing(decisions: pd.DataFrame) -> list[str]:
    return decisions.loc[decisions["decision"] == PASS, "gen_id"].tolist()


def _number(value: Any) -> float | None:
    """A statistic as JSON holds it: None where it is undefined (NaN)."""
    return None if value is None or pd.isna(value) else float(value)


def _json_value(value: Any) -> bool | int | float | str | None:
    """A table cell as JSON holds it: None for a missing value, numbers as int or float, anything else as text."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) or value == "" else str(value)


def gate_record(gen_id: str, scores: pd.DataFrame, gate: Gate, decision: str) -> dict:
    """What a dossier keeps of one gate for one essay: the gate file (path, sha256, text), the decision and, per
    criterion, its statistics, each judge's mean and count, the judges' agreement class
    (:func:`agreement.agreement_class`) and every evaluation behind it (gen_id, judge, replicate, score, file)."""
    scored = scored_evaluations(scores)
    scored = scored[scored["parent_gen_id"] == gen_id]
    criteria = []
    for criterion in gate.criteria:
        stats = criterion_statistics(scored, criterion)
        row: Any = stats.loc[gen_id] if gen_id in stats.index else None
        rows = scored[scored["evaluation_template"] == criterion.template].sort_values(
            ["evaluation_model", "evaluation_replicate", "gen_id"], kind="mergesort"
        )
        judges = rows.groupby("evaluation_model", sort=True)["score"].agg(["mean", "size"])
        criteria.append(
            {
                "template": criterion.template,
                "by": criterion.by,
                "min": criterion.min,
                **{
                    name: None if row is None else _number(row[name])
                    for name in ("value", "mean", "sd", "ci_low", "ci_high", "judge_range")
                },
                "n": 0 if row is None else int(row["n"]),
                "judges": {judge: {"mean": float(m), "n": int(n)} for judge, (m, n) in judges.iterrows()},
                "agreement": None if row is None else agreement.agreement_class(row["judge_range"], int(row["judges"])),
                "evaluations": [
                    {
                        "gen_id": _text(r["gen_id"]),
                        "judge": _text(r["evaluation_model"]),
                        "replicate": None if pd.isna(r["evaluation_replicate"]) else int(r["evaluation_replicate"]),
                        "score": float(r["score"]),
                        "file": _text(r["evaluation_path"]),
                    }
                    for r in rows.to_dict("records")
                ],
            }
        )
    return {
        "decision": decision,
        "file": str(gate.path),
        "sha256": gate.sha256,
        "text": gate.text,
        "min_judges": gate.min_judges,
        "max_judge_range": gate.max_judge_range,
        "criteria": criteria,
    }


def essay_record(gen_id: str, scores: pd.DataFrame, concepts: ConceptMap) -> dict:
    """What a dossier says of the essay itself: its combination and concepts, templates, model and files (the
    first non-empty value among its rows)."""
    rows = scores[scores["parent_gen_id"] == gen_id]

    def first(column: str) -> str | None:
        values = [v for v in rows[column] if _text(v) is not None]
        return str(values[0]) if values else None

    combo = first("combo_id")
    return {
        "gen_id": gen_id,
        "combo_id": combo,
        "concepts": [{"concept_id": c, "name": concepts.name(c)} for c in concepts.concept_ids(combo)],
        "templates": {"draft": first("draft_template"), "essay": first("generation_template")},
        "models": {"generation": first("generation_model")},
        "draft_gen_id": first("draft_gen_id"),
        "files": {"draft": first("draft_path"), "essay": first("essay_path")},
    }


def row_record(frame: pd.DataFrame | None, gen_id: str, columns: Iterable[str]) -> dict | None:
    """The essay's row of a table keyed by ``gen_id`` (tournament ratings, dedup clusters) as JSON values; None when
    the table is absent or does not hold the essay."""
    if frame is None or "gen_id" not in frame.columns:
        return None
    found = frame[frame["gen_id"].astype(str) == gen_id]
    if found.empty:
        return None
    row: Any = found.iloc[0]
    return {c: _json_value(row[c]) for c in columns if c in row.index and c != "gen_id"}
