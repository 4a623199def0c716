"""The report's sections as view models: the plain dicts and lists the template iterates over, made from the
tables in the reports folder.

The template only places what it is given; every choice of what a section shows (order, labels, which rows, what
"not run" means) is made here, in Python, where it can be tested.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.agreement import agreement_summary
from daydream_luigi.analysis.ratings import matches_from_table
from daydream_luigi.analysis.tournament import describe_position_bias, position_bias
from daydream_luigi.report.charts import forest, symmetric_domain
from daydream_luigi.report.data import ImportedTexts, StageUsage, locate, read_preview, records
from daydream_luigi.report.display import (
    SCORE_MAX,
    SCORE_MIN,
    as_number,
    as_text,
    descending,
    fmt_int,
    fmt_interval,
    fmt_percent,
    fmt_score,
    is_missing,
    relative_href,
    score_colour,
)
from daydream_luigi.store.files import PARSED

#: Summary groupings drawn as comparisons with intervals, in this order.
COMPARISONS = ("generation_template", "draft_template", "generation_model", "evaluation_model")

#: Concept pairs listed per evaluation template (largest differences first).
PAIR_ROWS = 30


def overview_view(parsed: pd.DataFrame, status: dict | None, usage: list[StageUsage], imported: ImportedTexts) -> dict:
    """The counts at the top of the page: evaluations (from ``status.json`` when it exists, else the parsed
    scores), scores, essays, judges, tokens and cost."""
    known = status or {}
    scored = parsed[parsed["score"].notna()]
    n_rows = len(parsed)

    def count(key: str, fallback):
        value = known.get(key)
        return int(value) if isinstance(value, (int, float)) else fallback

    failures = known.get("failures") or {}
    overview = {
        "evaluations": count("evaluations", n_rows),
        "on_disk": count("on_disk", n_rows),
        "scored": len(scored),
        "score_errors": count("score_errors", int((parsed["error"] != "").sum())),
        "failed": count("failed", len(failures)) if status is not None else None,
        "missing": count("missing", 0) if status is not None else None,
        "mean": float(scored["score"].mean()) if len(scored) else None,
        "sd": float(scored["score"].std(ddof=1)) if len(scored) >= 2 else None,
        "essays_scored": scored["parent_gen_id"].dropna().nunique(),
        "judges": sorted({str(j) for j in parsed["evaluation_model"].dropna()}),
        "templates": sorted({str(t) for t in parsed["evaluation_template"].dropna()}),
        "generation_models": sorted({str(m) for m in parsed["generation_model"].dropna()}),
    }
    by_stage = {u.stage: u for u in usage}
    costs = [u.cost for u in usage if u.cost is not None]
    overview.update(
        {
            "drafts": by_stage["draft"].in_cohort,
            "essays": by_stage["essay"].in_cohort,
            "imported_essays": len(imported.essays),
            "imported_drafts": len(imported.drafts),
            "prompt_tokens": sum(u.prompt_tokens for u in usage),
            "completion_tokens": sum(u.completion_tokens for u in usage),
            "cost": sum(costs) if costs else None,
        }
    )
    overview["tokens"] = overview["prompt_tokens"] + overview["completion_tokens"]
    return overview


def error_view(parsed: pd.DataFrame) -> list[dict]:
    """The evaluations on disk whose answer held no score, with the parser's reason."""
    return [
        {
            "gen_id": as_text(r.get("gen_id")),
            "essay": as_text(r.get("parent_gen_id")),
            "template": as_text(r.get("evaluation_template")),
            "judge": as_text(r.get("evaluation_model")),
            "error": as_text(r.get("error")),
        }
        for r in records(parsed[parsed["error"] != ""])
    ]


def failure_view(status: dict | None) -> list[dict]:
    """The evaluations that failed for good (no answer on disk), by gen_id, from ``status.json``."""
    failures = (status or {}).get("failures") or {}
    return [{"gen_id": str(k), "error": str(v)} for k, v in sorted(failures.items())]


def alpha_view(agreement_json: dict | None, parsed: pd.DataFrame) -> dict:
    """Krippendorff's alpha with a verdict in words, or why it is undefined (computed when agreement.json lacks it)."""
    data = agreement_json
    if data is None or "undefined_reason" not in data:  # absent, or written before reasons were recorded
        data = agreement_summary(parsed)
    alpha = data.get("alpha")
    if alpha is None:
        verdict, text = data.get("undefined_reason") or "undefined", "n/a"
    else:
        alpha = float(alpha)
        text = f"{alpha:.3f}"
        if alpha >= 0.8:
            verdict = "good reliability (\u03b1 \u2265 0.800)"
        elif alpha >= 0.667:
            verdict = "tentative reliability (0.667 \u2264 \u03b1 < 0.800)"
        elif alpha > 0:
            verdict = "low reliability (\u03b1 < 0.667): judges often disagree"
        else:
            verdict = "no agreement beyond chance (\u03b1 \u2264 0)"
    return {
        "defined": alpha is not None,
        "text": text,
        "verdict": verdict,
        "metric": data.get("metric", "interval"),
        "judges": data.get("n_judges"),
        "pairable_units": data.get("n_pairable_units"),
        "pairable_values": data.get("n_pairable_values"),
        "units": data.get("n_units"),
    }


def _group_display(grouping: str, group: str, combo_labels: dict[str, str]) -> str:
    """A group as shown: a combo by its concepts, with its id."""
    if grouping == "combo_id" and combo_labels.get(group):
        return f"{combo_labels[group]} ({group})"
    return group


def summary_views(summary: pd.DataFrame, combo_labels: dict[str, str]) -> list[dict]:
    """Per evaluation template: its summary tables and its comparisons with intervals."""
    templates: dict[str, dict[str, list[dict]]] = {}
    for r in records(summary):
        grouping = as_text(r.get("grouping"))
        group = as_text(r.get("group"))
        low, high = as_number(r.get("ci_low")), as_number(r.get("ci_high"))
        templates.setdefault(as_text(r.get("evaluation_template")), {}).setdefault(grouping, []).append(
            {
                "group": _group_display(grouping, group, combo_labels),
                "group_id": group,
                "n": fmt_int(as_number(r.get("n"))),
                "n_evaluations": fmt_int(as_number(r.get("n_evaluations"))),
                "mean_value": as_number(r.get("mean")),
                "low": low,
                "high": high,
                "mean": fmt_score(as_number(r.get("mean"))),
                "interval": fmt_interval(low, high),
                "sd": fmt_score(as_number(r.get("sd"))),
                "min": fmt_score(as_number(r.get("min"))),
                "max": fmt_score(as_number(r.get("max"))),
                "top_share": fmt_percent(r.get("top_share")),
                "high_share": fmt_percent(r.get("high_share")),
                "low_count": as_text(r.get("low_count")),
            }
        )
    views = []
    for template, groupings in templates.items():
        comparisons, single = [], []
        for grouping in COMPARISONS:
            rows = groupings.get(grouping, [])
            if len(rows) < 2:
                single.extend([f"{grouping} ({rows[0]['group']})"] if rows else [])
                continue
            plot_rows = [
                {
                    "label": r["group"],
                    "title": r["group_id"],
                    "point": r["mean_value"],
                    "low": r["low"],
                    "high": r["high"],
                    "note": f"n={r['n']}",
                }
                for r in rows
            ]
            comparisons.append({"grouping": grouping, "plot": forest(plot_rows, SCORE_MIN, SCORE_MAX)})
        views.append(
            {
                "template": template,
                "comparisons": comparisons,
                "single": single,
                "overall": (groupings.get("overall") or [None])[0],
                "tables": [{"grouping": g, "rows": rows} for g, rows in groupings.items() if g != "overall"],
            }
        )
    return views


def concept_views(effects: pd.DataFrame | None, pairs: pd.DataFrame | None) -> list[dict]:
    """Per evaluation template: the concepts' differences with intervals (a plot) and the largest pair effects."""
    views: dict[str, dict] = {}
    for r in records(effects):
        views.setdefault(as_text(r.get("evaluation_template")), {"rows": [], "pairs": []})["rows"].append(
            {
                "label": as_text(r.get("concept")) or as_text(r.get("concept_id")),
                "title": as_text(r.get("concept_id")),
                "point": as_number(r.get("difference")),
                "low": as_number(r.get("ci_low")),
                "high": as_number(r.get("ci_high")),
                "note": (
                    f"{fmt_score(as_number(r.get('mean_with')))} with (n={fmt_int(as_number(r.get('n_with')))}) vs "
                    f"{fmt_score(as_number(r.get('mean_without')))} (n={fmt_int(as_number(r.get('n_without')))})"
                ),
            }
        )
    for r in records(pairs):
        view = views.setdefault(as_text(r.get("evaluation_template")), {"rows": [], "pairs": []})
        low, high = as_number(r.get("ci_low")), as_number(r.get("ci_high"))
        view["pairs"].append(
            {
                "a": as_text(r.get("concept_a")),
                "b": as_text(r.get("concept_b")),
                "difference_value": as_number(r.get("difference")),
                "difference": fmt_score(as_number(r.get("difference"))),
                "interval": fmt_interval(low, high),
                "n_with": fmt_int(as_number(r.get("n_with"))),
                "mean_with": fmt_score(as_number(r.get("mean_with"))),
                "mean_without": fmt_score(as_number(r.get("mean_without"))),
                "excludes_zero": not is_missing(low) and (low > 0 or high < 0),
            }
        )
    out = []
    for template, view in sorted(views.items()):
        rows = sorted(view["rows"], key=lambda r: (*descending(r["point"]), r["label"]))
        pair_rows = sorted(view["pairs"], key=lambda r: (*descending(r["difference_value"]), r["a"], r["b"]))
        low, high = symmetric_domain([v for r in rows for v in (r["point"], r["low"], r["high"])])
        out.append(
            {
                "template": template,
                "plot": forest(rows, low, high, reference=0.0) if rows else None,
                "pairs": pair_rows[:PAIR_ROWS],
                "pairs_total": len(pair_rows),
            }
        )
    return out


def tournament_view(
    ratings: pd.DataFrame | None, matches: pd.DataFrame | None, summary: dict | None, essay_labels: dict[str, str]
) -> dict | None:
    """The tournament's ladder (best first) with its plot, the judge's position bias and the run's summary; None
    when `daydream tournament` has not run (no ratings)."""
    if ratings is None:
        return None
    ranked = sorted(records(ratings), key=lambda r: (*descending(as_number(r.get("rating"))), as_text(r.get("gen_id"))))
    ladder, plot_rows = [], []
    for rank, r in enumerate(ranked, 1):
        gen_id = as_text(r.get("gen_id"))
        rating, low, high = as_number(r.get("rating")), as_number(r.get("ci_low")), as_number(r.get("ci_high"))
        record = (
            fmt_int(as_number(r.get("wins"))),
            fmt_int(as_number(r.get("losses"))),
            fmt_int(as_number(r.get("ties"))),
        )
        ladder.append(
            {
                "rank": rank,
                "essay": gen_id,
                "concepts": essay_labels.get(gen_id, ""),
                "rating": fmt_score(rating),
                "interval": fmt_interval(low, high),
                "record": "\u2013".join(record),
            }
        )
        plot_rows.append(
            {
                "label": f"#{rank} {gen_id}",
                "title": essay_labels.get(gen_id, gen_id),
                "point": rating,
                "low": low,
                "high": high,
                "note": "W\u2013L\u2013T " + "\u2013".join(record),
            }
        )
    values = [v for r in plot_rows for v in (r["point"], r["low"], r["high"]) if not is_missing(v)]
    plot = None
    if values:
        low, high = math.floor(min(values)), math.ceil(max(values))
        plot = forest(plot_rows, low, high if high > low else low + 1)
    bias = (
        None if matches is None or matches.empty else describe_position_bias(position_bias(matches_from_table(matches)))
    )
    return {
        "ladder": ladder,
        "plot": plot,
        "position_bias": bias,
        "summary": summary,
    }


def dedup_view(clusters_table: pd.DataFrame | None, summary: dict | None, essay_labels: dict[str, str]) -> dict | None:
    """The clusters of near-duplicates that hold more than one essay (largest first, representative first), with
    the run's summary; None when `daydream dedup` has not run."""
    if clusters_table is None:
        return None
    clusters: dict[str, list[dict]] = {}
    for r in records(clusters_table):
        gen_id, representative = as_text(r.get("gen_id")), as_text(r.get("representative"))
        clusters.setdefault(as_text(r.get("cluster")), []).append(
            {
                "essay": gen_id,
                "concepts": essay_labels.get(gen_id, ""),
                "representative": gen_id == representative,
                "similarity": fmt_score(as_number(r.get("nearest_similarity"))),
            }
        )
    merged = sorted(
        (
            (name, sorted(members, key=lambda m: (not m["representative"], m["essay"])))
            for name, members in clusters.items()
            if len(members) > 1
        ),
        key=lambda item: (-len(item[1]), item[0]),
    )
    return {
        "essays": sum(len(m) for m in clusters.values()),
        "clusters": len(clusters),
        "merged": [{"cluster": name, "members": members} for name, members in merged],
        "summary": summary,
    }


def top_essays(
    top: pd.DataFrame,
    parsed: pd.DataFrame,
    pivot: pd.DataFrame,
    reports_dir: Path,
    gens_root: Path,
    imported: ImportedTexts,
) -> list[dict]:
    """Per evaluation template, its best essays (as in ``top_score_paths.csv``) with their text, links to their
    files and each evaluation behind the mean."""
    per_essay = {as_text(r.get("parent_gen_id")): r for r in records(pivot)}
    essays = {}
    for record in records(parsed):
        essay = as_text(record.get("parent_gen_id"))
        if essay and essay not in essays:
            essays[essay] = record
    by_path = {as_text(r.get("evaluation_path")): r for r in records(parsed) if as_text(r.get("evaluation_path"))}
    groups: dict[str, list[dict]] = {}
    for record in records(top):
        template = as_text(record.get("evaluation_template"))
        essay = as_text(record.get("parent_gen_id"))
        info = essays.get(essay, {})
        essay_file = locate(as_text(record.get("essay_path")), gens_root, "essay", essay, PARSED)
        draft_id = as_text(info.get("draft_gen_id"))
        draft_file = locate(as_text(record.get("draft_path")), gens_root, "draft", draft_id, PARSED)
        evaluations = []
        for stored in filter(None, as_text(record.get("evaluation_paths")).split(";")):
            row = by_path.get(stored, {})
            gen_id = as_text(row.get("gen_id"))
            path = locate(stored, gens_root, "evaluation", gen_id, Path(stored).name)
            judge = as_text(row.get("evaluation_model")) or Path(stored).parent.name
            replicate = row.get("evaluation_replicate")
            label = judge if is_missing(replicate) else f"{judge} #{int(replicate)}"
            evaluations.append(
                {
                    "label": label,
                    "href": relative_href(path, reports_dir),
                    "score": fmt_score(row.get("score")),
                    "stored": stored,
                }
            )
        text, length, truncated = read_preview(essay_file)
        mean = pd.to_numeric(record.get("mean_score"), errors="coerce")
        background, colour = score_colour(mean)
        aggregate = per_essay.get(essay, {})
        n = as_number(aggregate.get(f"{template}:n"))
        groups.setdefault(template, []).append(
            {
                "rank": len(groups.get(template, [])) + 1,
                "essay": essay,
                "mean": fmt_score(mean),
                "interval": fmt_interval(
                    as_number(aggregate.get(f"{template}:ci_low")), as_number(aggregate.get(f"{template}:ci_high"))
                ),
                "n": "" if is_missing(n) else int(n),
                "concepts": as_text(aggregate.get("concepts")),
                "origin": imported.origin(essay),
                "imported": essay in imported.essays,
                "background": background,
                "colour": colour,
                "generation_model": as_text(info.get("generation_model")),
                "generation_template": as_text(info.get("generation_template")),
                "draft_template": as_text(info.get("draft_template")),
                "combo": as_text(info.get("combo_id")),
                "essay_href": relative_href(essay_file, reports_dir),
                "draft_href": relative_href(draft_file, reports_dir),
                "evaluations": evaluations,
                "text": text,
                "length": length,
                "truncated": truncated,
                "found": essay_file is not None,
            }
        )
    return [{"template": t, "essays": rows} for t, rows in groups.items()]


def judge_means(means: pd.DataFrame | None) -> dict:
    """The judge x template table of mean scores, each cell coloured by its score."""
    if means is None or means.empty or "evaluation_model" not in means.columns:
        return {"templates": [], "rows": []}
    templates = [c for c in means.columns if c != "evaluation_model"]
    rows = []
    for r in records(means):
        cells = []
        for t in templates:
            value = pd.to_numeric(r.get(t), errors="coerce")
            background, colour = score_colour(value)
            cells.append({"value": fmt_score(value), "background": background, "colour": colour})
        rows.append({"judge": as_text(r.get("evaluation_model")), "cells": cells})
    return {"templates": templates, "rows": rows}
