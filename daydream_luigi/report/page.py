"""A self-contained HTML report of one cohort, built from its reports folder and the generation store.

Inputs are the files `analysis.results.write_tables` and `report.collect` write into
``data/cohorts/<cohort_id>/reports/`` plus the ``metadata.json`` of the cohort's generations (tokens, cost, latency).
A derived table that is missing is recomputed from ``parsed_scores.csv`` (without concept names: those come from
``pivot.csv``'s ``concepts`` column, which ``write_tables`` fills from the combo mappings).  The tournament ladder
and the near-duplicate clusters are read from :data:`TOURNAMENT_RATINGS_FILE` and :data:`DEDUP_CLUSTERS_FILE` when
those commands have run; their sections say "not run" otherwise. Texts imported from elsewhere (see `importer`), and
essays written from imported drafts, are marked with the label they were imported with wherever an essay is listed.

The page has no scripts, no external resources and no external links: charts are inline SVG or plain HTML tables,
all text goes through Jinja2 autoescaping, and links to generation files are relative to the reports folder so the
folder can be opened in a browser straight from disk.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import pandas as pd

from daydream_luigi.analysis import results
from daydream_luigi.analysis.ratings import matches_from_table
from daydream_luigi.analysis.tournament import describe_position_bias, position_bias
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.settings import STAGES
from daydream_luigi.store.files import atomic_write_text
from daydream_luigi.store.membership import MEMBERSHIP

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE = "report.html"
#: Written by `daydream tournament`: gen_id, rating, ci_low, ci_high, wins, losses, ties.
TOURNAMENT_RATINGS_FILE = "tournament_ratings.csv"
#: Written by `daydream tournament`: one row per judgment (match_id, round, a, b, order, judgment_id, verdict, ...).
TOURNAMENT_MATCHES_FILE = "tournament_matches.csv"
#: Written by `daydream tournament`: its judge, template, rounds and position bias.
TOURNAMENT_SUMMARY_FILE = "tournament.json"
#: Written by `daydream dedup`: gen_id, cluster, representative (its cluster's representative), nearest_similarity.
DEDUP_CLUSTERS_FILE = "dedup_clusters.csv"
#: Written by `daydream dedup`: its threshold, embedding model and the template that picked representatives.
DEDUP_SUMMARY_FILE = "dedup.json"

SCORE_MIN, SCORE_MAX = 0, 10
ESSAY_PREVIEW_CHARS = 4000
#: At most this many (essay, template) units are drawn in the agreement plot (widest judge ranges first).
AGREEMENT_PLOT_ROWS = 120
#: Summary groupings drawn as comparisons with intervals, in this order.
COMPARISONS = ("generation_template", "draft_template", "generation_model", "evaluation_model")
#: Concept pairs listed per evaluation template (largest differences first).
PAIR_ROWS = 30
AGREEMENT_CLASSES = ("high", "moderate", "low", "poor")
AGREEMENT_COLOURS = {"high": "#2e8b57", "moderate": "#3b7dd8", "low": "#e08a1e", "poor": "#c9352b", "single": "#9aa0a6"}
AGREEMENT_RULES = {
    "high": "range \u2264 1",
    "moderate": "range \u2264 2",
    "low": "range \u2264 3",
    "poor": "range > 3",
    "single": "one judge",
}
MARKERS = ("circle", "square", "diamond", "triangle")
NOTE_CHAR_PX = 7.0  # width of one character of the notes beside a plot (12 px sans-serif, generously)
LABEL_CHAR_PX = 7.6  # ... and of a row's label, which has more capitals and wide letters (measured in Chromium)

# Score colour scale (value on 0..10 -> RGB): warm for low scores, neutral in the middle, blue for high ones.
_SCALE = (
    (0.0, (179, 58, 58)),
    (2.5, (232, 149, 107)),
    (5.0, (244, 241, 234)),
    (7.5, (116, 169, 207)),
    (10.0, (31, 95, 153)),
)

_ID_COLUMNS = (
    "cohort_id",
    "gen_id",
    "parent_gen_id",
    "evaluation_template",
    "evaluation_model",
    "combo_id",
    "draft_gen_id",
    "draft_template",
    "generation_template",
    "generation_model",
    "evaluation_path",
    "essay_path",
    "draft_path",
    "error",
)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _text(value) -> str:
    return "" if _missing(value) else str(value)


def fmt_score(value) -> str:
    """A score for display: at most two decimals, no trailing zeros (7, 6.5, 6.33); an en dash when missing."""
    if _missing(value):
        return "\u2013"
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def fmt_int(value) -> str:
    return f"{int(value):,}"


def fmt_cost(value: float | None) -> str:
    if value is None:
        return "not reported"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def score_colour(value) -> tuple[str, str]:
    """(background, text colour) of a score cell."""
    if _missing(value):
        return "#f1f3f4", "#80868b"
    v = min(max(float(value), SCORE_MIN), SCORE_MAX)
    for (x0, c0), (x1, c1) in zip(_SCALE, _SCALE[1:]):
        if v <= x1:
            t = 0.0 if x1 == x0 else (v - x0) / (x1 - x0)
            rgb = tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
            break
    luminance = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("#ffffff" if luminance < 0.55 else "#202124")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_csv(path: Path, numeric: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """A CSV with every column as text (ids stay ids), except `numeric` ones; None when the file is absent."""
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for column in numeric:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _read_parsed_scores(reports_dir: Path) -> pd.DataFrame:
    frame = _read_csv(
        reports_dir / results.REPORT_FILES["parsed_scores"], numeric=("score", "score_max", "evaluation_replicate")
    )
    if frame is None or frame.empty:
        frame = pd.DataFrame({c: pd.Series([], dtype="object") for c in results.PARSED_SCORES_COLUMNS})
    for column in results.PARSED_SCORES_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype("float64")
    frame["score_max"] = pd.to_numeric(frame["score_max"], errors="coerce").astype("float64")
    frame["error"] = frame["error"].map(_text)
    return frame


def _table(reports_dir: Path, name: str, parsed: pd.DataFrame, compute, numeric=()) -> pd.DataFrame:
    """A derived table from disk, or computed from the parsed scores when its file is absent."""
    frame = _read_csv(reports_dir / results.REPORT_FILES[name], numeric=numeric)
    if frame is None:
        frame = compute(parsed)
    return frame


def _records(frame: pd.DataFrame) -> list[dict]:
    return [] if frame is None or frame.empty else frame.to_dict("records")


# --------------------------------------------------------------------------
# generation metadata (tokens, cost, latency)
# --------------------------------------------------------------------------


@dataclass
class StageUsage:
    stage: str
    in_cohort: int = 0
    complete: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    latency_total: float = 0.0
    latency_count: int = 0

    @property
    def mean_latency(self) -> str:
        return f"{self.latency_total / self.latency_count:.2f} s" if self.latency_count else "\u2013"


def _cohort_gen_ids(parsed: pd.DataFrame, status: dict, cohort_dir: Path) -> dict[str, set[str]]:
    """gen_ids per stage: the lineage in parsed_scores, failed evaluations and the cohort's membership.csv."""
    ids: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for stage, column in (("evaluation", "gen_id"), ("essay", "parent_gen_id"), ("draft", "draft_gen_id")):
        ids[stage].update(_text(v) for v in parsed[column] if _text(v))
    ids["evaluation"].update(str(k) for k in (status.get("failures") or {}))
    membership = cohort_dir / MEMBERSHIP
    if membership.exists():
        with membership.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("stage") in ids and row.get("gen_id"):
                    ids[row["stage"]].add(row["gen_id"])
    return {stage: {g for g in values if id_problem(g) is None} for stage, values in ids.items()}


def _usage(gens_root: Path, gen_ids: dict[str, set[str]]) -> list[StageUsage]:
    usage = []
    for stage in STAGES:
        row = StageUsage(stage, in_cohort=len(gen_ids[stage]))
        for gen_id in sorted(gen_ids[stage]):
            meta = _read_json(gens_root / stage / gen_id / "metadata.json")
            if meta is None:
                continue
            row.complete += 1
            prompt, completion = meta.get("prompt_tokens"), meta.get("completion_tokens")
            if meta.get("attempts") or prompt or completion:
                row.calls += 1
            row.prompt_tokens += int(prompt or 0)
            row.completion_tokens += int(completion or 0)
            if isinstance(meta.get("cost"), (int, float)):
                row.cost = (row.cost or 0.0) + float(meta["cost"])
            if isinstance(meta.get("latency_s"), (int, float)):
                row.latency_total += float(meta["latency_s"])
                row.latency_count += 1
        usage.append(row)
    return usage


@dataclass(frozen=True)
class ImportedTexts:
    """Texts of the cohort written elsewhere (see `importer`), each with the label it was imported with (else its
    file name): imported essays, imported drafts, and the essays written here from those drafts."""

    essays: dict  # essay gen_id -> label
    drafts: dict  # draft gen_id -> label
    from_drafts: dict  # essay gen_id -> the label of the imported draft it was written from

    def origin(self, essay: str) -> str:
        """The mark an essay gets in the report; empty for an essay generated here from a generated draft."""
        if essay in self.essays:
            return f"imported: {self.essays[essay]}"
        return f"from imported draft: {self.from_drafts[essay]}" if essay in self.from_drafts else ""


def _imported(gens_root: Path, gen_ids: dict[str, set[str]]) -> ImportedTexts:
    labels: dict[str, dict] = {"draft": {}, "essay": {}}
    parents = {}  # generated essay -> its draft
    for stage, found in labels.items():
        for gen_id in sorted(gen_ids[stage]):
            meta = _read_json(gens_root / stage / gen_id / "metadata.json") or {}
            if meta.get("imported"):
                found[gen_id] = _text(meta.get("label")) or _text(meta.get("source_file"))
            elif stage == "essay":
                parents[gen_id] = _text(meta.get("parent_gen_id"))
    drafts = labels["draft"]
    return ImportedTexts(
        labels["essay"], drafts, {essay: drafts[draft] for essay, draft in parents.items() if draft in drafts}
    )


# --------------------------------------------------------------------------
# charts (geometry only; the template draws it)
# --------------------------------------------------------------------------


@dataclass
class Histogram:
    template: str
    judge: str
    n: int
    mean: float
    counts: list[int]
    bars: list[dict] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)
    mean_x: float = 0.0
    width: int = 240
    height: int = 120
    base_y: float = 0.0


def _histogram(template: str, judge: str, scores: list[float]) -> Histogram:
    bins = SCORE_MAX - SCORE_MIN + 1
    counts = [0] * bins
    for score in scores:
        index = int(math.floor(min(max(score, SCORE_MIN), SCORE_MAX) + 0.5)) - SCORE_MIN
        counts[min(index, bins - 1)] += 1
    hist = Histogram(template, judge, len(scores), sum(scores) / len(scores), counts)
    left, right, top, bottom = 6, 6, 16, 20
    slot = (hist.width - left - right) / bins
    hist.base_y = hist.height - bottom
    tallest = max(counts) or 1
    for i, count in enumerate(counts):
        h = (hist.base_y - top) * count / tallest
        x = left + i * slot
        fill, _ = score_colour(SCORE_MIN + i)
        hist.bars.append(
            {
                "x": round(x + 1.5, 2),
                "y": round(hist.base_y - h, 2),
                "w": round(slot - 3, 2),
                "h": round(h, 2),
                "count": count,
                "cx": round(x + slot / 2, 2),
                "label_y": round(hist.base_y - h - 3, 2),
                "fill": fill,
                "value": SCORE_MIN + i,
            }
        )
        hist.ticks.append({"x": round(x + slot / 2, 2), "label": str(SCORE_MIN + i)})
    hist.mean_x = round(left + (hist.mean - SCORE_MIN + 0.5) * slot, 2)
    return hist


def _histograms(parsed: pd.DataFrame) -> list[dict]:
    scored = parsed[parsed["score"].notna()]
    groups = []
    for template, by_template in scored.groupby("evaluation_template", sort=True):
        charts = [
            _histogram(str(template), str(judge), [float(s) for s in g["score"]])
            for judge, g in by_template.groupby("evaluation_model", sort=True)
        ]
        if len(charts) > 1:
            charts.append(_histogram(str(template), "all judges", [float(s) for s in by_template["score"]]))
        groups.append({"template": str(template), "charts": charts})
    return groups


def _interval_text(low, high) -> str:
    return "no interval" if _missing(low) or _missing(high) else f"[{fmt_score(low)}, {fmt_score(high)}]"


def _number(value) -> float:
    number = pd.to_numeric(value, errors="coerce")
    return math.nan if _missing(number) else float(number)


def _descending(value: float) -> tuple[bool, float]:
    """Sort key: largest first, missing values last."""
    return (True, 0.0) if _missing(value) else (False, -value)


def _heatmap(pivot: pd.DataFrame, parsed: pd.DataFrame, imported: ImportedTexts) -> dict:
    pairs = {
        f"{t}_{j}": (str(t), str(j))
        for t, j in parsed[["evaluation_template", "evaluation_model"]]
        .dropna()
        .drop_duplicates()
        .itertuples(index=False)
    }
    columns = [{"name": c, "template": pairs[c][0], "judge": pairs[c][1]} for c in pivot.columns if c in pairs]
    templates = sorted({str(t) for t in parsed["evaluation_template"].dropna() if f"{t}:mean" in pivot.columns})
    rows = []
    for record in _records(pivot):
        cells = []
        for column in columns:
            value = _number(record.get(column["name"]))
            background, colour = score_colour(value)
            cells.append(
                {
                    "column": column["name"],
                    "value": fmt_score(value),
                    "missing": _missing(value),
                    "raw": "" if _missing(value) else repr(value),
                    "background": background,
                    "colour": colour,
                }
            )
        aggregates = []
        for template in templates:
            low, high = (_number(record.get(f"{template}:{k}")) for k in ("ci_low", "ci_high"))
            mean = _number(record.get(f"{template}:mean"))
            background, colour = score_colour(mean)
            n = _number(record.get(f"{template}:n"))
            aggregates.append(
                {
                    "template": template,
                    "mean": mean,
                    "value": fmt_score(mean),
                    "interval": _interval_text(low, high),
                    "n": "" if _missing(n) else int(n),
                    "background": background,
                    "colour": colour,
                }
            )
        essay = _text(record.get("parent_gen_id"))
        rows.append(
            {
                "essay": essay,
                "combo": _text(record.get("combo_id")),
                "origin": imported.origin(essay),
                "concepts": _text(record.get("concepts")),
                "draft_template": _text(record.get("draft_template")),
                "generation_template": _text(record.get("generation_template")),
                "generation_model": _text(record.get("generation_model")),
                "cells": cells,
                "aggregates": aggregates,
            }
        )
    # Best first on the first template, then the next; an essay without a score on a template sorts after others.
    rows.sort(key=lambda r: (*(_descending(a["mean"]) for a in r["aggregates"]), r["essay"]))
    legend = []
    for v in range(SCORE_MIN, SCORE_MAX + 1):
        background, colour = score_colour(v)
        legend.append({"value": v, "background": background, "colour": colour})
    return {"columns": columns, "templates": templates, "rows": rows, "legend": legend}


def _agreement_plot(agreement: pd.DataFrame, parsed: pd.DataFrame) -> dict:
    scored = parsed[parsed["score"].notna() & parsed["parent_gen_id"].notna()]
    per_judge = (
        scored.groupby(["parent_gen_id", "evaluation_template", "evaluation_model"], sort=True)["score"]
        .mean()
        .reset_index()
    )
    judges = sorted({str(j) for j in per_judge["evaluation_model"]})
    marker_of = {j: MARKERS[i % len(MARKERS)] for i, j in enumerate(judges)}
    values: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for essay, template, judge, score in per_judge.itertuples(index=False):
        values[(str(essay), str(template))].append((str(judge), float(score)))

    records = _records(agreement)
    classes = Counter(_text(r.get("agreement")) for r in records)
    total = sum(classes.values())
    summary = []
    for name in (*AGREEMENT_CLASSES, "single"):
        if classes.get(name) or name in AGREEMENT_CLASSES:
            count = classes.get(name, 0)
            summary.append(
                {
                    "name": name,
                    "count": count,
                    "share": (100.0 * count / total) if total else 0.0,
                    "colour": AGREEMENT_COLOURS[name],
                    "rule": AGREEMENT_RULES[name],
                }
            )

    units = []
    for r in records:
        count = pd.to_numeric(r.get("judge_count"), errors="coerce")
        if _missing(count) or count < 2:
            continue
        key = (_text(r.get("parent_gen_id")), _text(r.get("evaluation_template")))
        units.append(
            {
                "essay": key[0],
                "template": key[1],
                "range": float(pd.to_numeric(r.get("range"))),
                "mean": float(pd.to_numeric(r.get("mean"))),
                "class": _text(r.get("agreement")),
                "values": values.get(key, []),
            }
        )
    units.sort(key=lambda u: (-u["range"], -u["mean"], u["essay"], u["template"]))
    shown = units[:AGREEMENT_PLOT_ROWS]

    label_w, plot_w, right_w, row_h, top, bottom = 340, 520, 150, 20, 28, 8
    x0 = label_w
    scale = plot_w / (SCORE_MAX - SCORE_MIN)
    height = top + row_h * len(shown) + bottom
    rows = []
    for i, unit in enumerate(shown):
        y = top + row_h * i + row_h / 2
        xs = [x0 + (v - SCORE_MIN) * scale for _, v in unit["values"]] or [x0 + (unit["mean"] - SCORE_MIN) * scale]
        colour = AGREEMENT_COLOURS.get(unit["class"], AGREEMENT_COLOURS["single"])
        dots = [
            {
                "x": round(x0 + (v - SCORE_MIN) * scale, 2),
                "y": round(y, 2),
                "judge": j,
                "score": fmt_score(v),
                "marker": marker_of.get(j, "circle"),
            }
            for j, v in unit["values"]
        ]
        rows.append(
            {
                "y": round(y, 2),
                "text_y": round(y + 4, 2),
                "band_y": round(y - row_h / 2, 2),
                "zebra": i % 2 == 0,
                "essay_label": _shorten(unit["essay"], 24),
                "template_label": _shorten(unit["template"], 20),
                "essay_id": unit["essay"],
                "template": unit["template"],
                "x_min": round(min(xs), 2),
                "x_max": round(max(xs), 2),
                "colour": colour,
                "dots": dots,
                "class": unit["class"],
                "range": fmt_score(unit["range"]),
                "mean": fmt_score(unit["mean"]),
            }
        )
    grid = [{"x": round(x0 + (v - SCORE_MIN) * scale, 2), "label": str(v)} for v in range(SCORE_MIN, SCORE_MAX + 1)]
    return {
        "rows": rows,
        "grid": grid,
        "width": label_w + plot_w + right_w,
        "height": height,
        "plot_top": top - 6,
        "plot_bottom": height - bottom,
        "label_w": label_w,
        "right_x": x0 + plot_w + 14,
        "total_units": len(units),
        "shown_units": len(shown),
        "summary": summary,
        "summary_total": total,
        "judges": [{"name": j, "marker": marker_of[j]} for j in judges],
    }


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _alpha_view(agreement_json: dict | None, parsed: pd.DataFrame) -> dict:
    data = agreement_json
    if data is None or "undefined_reason" not in data:  # absent, or written before reasons were recorded
        data = results.agreement_summary(parsed)
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


# --------------------------------------------------------------------------
# comparisons and concept effects (point-and-interval plots)
# --------------------------------------------------------------------------


def _ticks(low: float, high: float) -> list[float]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if (high - low) / s <= 10)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 6) for i in range(int((high - first) / step + 1e-9) + 1)]


def _forest(rows: list[dict], low: float, high: float, reference: float | None = None) -> dict:
    """Geometry of a point-and-interval plot; each row has label, title, point, low, high and note.

    With a ``reference`` (0 for differences), rows whose interval lies wholly on one side of it are marked.
    """
    plot_w, right_w, row_h, top, bottom = 440, 230, 22, 26, 8
    labels = [_shorten(row["label"], 40) for row in rows]
    label_w = max(120, 24 + round(LABEL_CHAR_PX * max(map(len, labels), default=0)))  # no label is cut at the edge

    def x(value: float) -> float:
        return round(label_w + (min(max(value, low), high) - low) / (high - low) * plot_w, 2)

    drawn = []
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        has_interval = not (_missing(row["low"]) or _missing(row["high"]))
        clear = has_interval and reference is not None and (row["low"] > reference or row["high"] < reference)
        drawn.append(
            {
                **row,
                "excludes_zero": clear,
                "y": round(y, 2),
                "text_y": round(y + 4, 2),
                "band_y": round(y - row_h / 2, 2),
                "zebra": i % 2 == 0,
                "label_short": labels[i],
                "x": None if _missing(row["point"]) else x(row["point"]),
                "x_low": x(row["low"]) if has_interval else None,
                "x_high": x(row["high"]) if has_interval else None,
                "point_text": fmt_score(row["point"]),
                "interval": _interval_text(row["low"], row["high"]),
            }
        )
    longest = max((len(f"{r['point_text']} {r['interval']} \u00b7 {r['note']}") for r in drawn), default=0)
    right_w = max(right_w, 12 + round(NOTE_CHAR_PX * longest))  # the note beside each row is never cut off
    height = top + row_h * len(rows) + bottom
    return {
        "rows": drawn,
        "grid": [{"x": x(t), "label": fmt_score(t)} for t in _ticks(low, high)],
        "width": label_w + plot_w + right_w,
        "height": height,
        "label_w": label_w,
        "right_x": label_w + plot_w + 12,
        "plot_top": top - 6,
        "plot_bottom": height - bottom,
        "reference_x": None if reference is None else x(reference),
    }


def _symmetric_domain(values: list[float]) -> tuple[float, float]:
    finite = [abs(v) for v in values if not _missing(v)]
    bound = max([1.0, *finite])
    bound = math.ceil(bound) if bound <= 10 else math.ceil(bound / 5) * 5
    return -float(bound), float(bound)


def _group_display(grouping: str, group: str, combo_labels: dict[str, str]) -> str:
    if grouping == "combo_id" and combo_labels.get(group):
        return f"{combo_labels[group]} ({group})"
    return group


def _summary_view(summary: pd.DataFrame, combo_labels: dict[str, str]) -> list[dict]:
    """Per evaluation template: its summary tables and its comparisons with intervals."""
    templates: dict[str, dict[str, list[dict]]] = {}
    for r in _records(summary):
        grouping = _text(r.get("grouping"))
        group = _text(r.get("group"))
        low, high = _number(r.get("ci_low")), _number(r.get("ci_high"))
        templates.setdefault(_text(r.get("evaluation_template")), {}).setdefault(grouping, []).append(
            {
                "group": _group_display(grouping, group, combo_labels),
                "group_id": group,
                "n": fmt_int(_number(r.get("n"))),
                "n_evaluations": fmt_int(_number(r.get("n_evaluations"))),
                "mean_value": _number(r.get("mean")),
                "low": low,
                "high": high,
                "mean": fmt_score(_number(r.get("mean"))),
                "interval": _interval_text(low, high),
                "sd": fmt_score(_number(r.get("sd"))),
                "min": fmt_score(_number(r.get("min"))),
                "max": fmt_score(_number(r.get("max"))),
                "top_share": _percent(r.get("top_share")),
                "high_share": _percent(r.get("high_share")),
                "low_count": _text(r.get("low_count")),
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
            comparisons.append({"grouping": grouping, "plot": _forest(plot_rows, SCORE_MIN, SCORE_MAX)})
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


def _concept_view(effects: pd.DataFrame | None, pairs: pd.DataFrame | None) -> list[dict]:
    """Per evaluation template: the concepts' differences with intervals (a plot) and the largest pair effects."""
    views: dict[str, dict] = {}
    for r in _records(effects):
        views.setdefault(_text(r.get("evaluation_template")), {"rows": [], "pairs": []})["rows"].append(
            {
                "label": _text(r.get("concept")) or _text(r.get("concept_id")),
                "title": _text(r.get("concept_id")),
                "point": _number(r.get("difference")),
                "low": _number(r.get("ci_low")),
                "high": _number(r.get("ci_high")),
                "note": (
                    f"{fmt_score(_number(r.get('mean_with')))} with (n={fmt_int(_number(r.get('n_with')))}) vs "
                    f"{fmt_score(_number(r.get('mean_without')))} (n={fmt_int(_number(r.get('n_without')))})"
                ),
            }
        )
    for r in _records(pairs):
        view = views.setdefault(_text(r.get("evaluation_template")), {"rows": [], "pairs": []})
        low, high = _number(r.get("ci_low")), _number(r.get("ci_high"))
        view["pairs"].append(
            {
                "a": _text(r.get("concept_a")),
                "b": _text(r.get("concept_b")),
                "difference_value": _number(r.get("difference")),
                "difference": fmt_score(_number(r.get("difference"))),
                "interval": _interval_text(low, high),
                "n_with": fmt_int(_number(r.get("n_with"))),
                "mean_with": fmt_score(_number(r.get("mean_with"))),
                "mean_without": fmt_score(_number(r.get("mean_without"))),
                "excludes_zero": not _missing(low) and (low > 0 or high < 0),
            }
        )
    out = []
    for template, view in sorted(views.items()):
        rows = sorted(view["rows"], key=lambda r: (*_descending(r["point"]), r["label"]))
        pair_rows = sorted(view["pairs"], key=lambda r: (*_descending(r["difference_value"]), r["a"], r["b"]))
        low, high = _symmetric_domain([v for r in rows for v in (r["point"], r["low"], r["high"])])
        out.append(
            {
                "template": template,
                "plot": _forest(rows, low, high, reference=0.0) if rows else None,
                "pairs": pair_rows[:PAIR_ROWS],
                "pairs_total": len(pair_rows),
            }
        )
    return out


# --------------------------------------------------------------------------
# tournament and near-duplicates (written by their own commands)
# --------------------------------------------------------------------------


def _tournament_view(reports_dir: Path, essay_labels: dict[str, str]) -> dict | None:
    frame = _read_csv(
        reports_dir / TOURNAMENT_RATINGS_FILE, numeric=("rating", "ci_low", "ci_high", "wins", "losses", "ties")
    )
    if frame is None:
        return None
    records = sorted(_records(frame), key=lambda r: (*_descending(_number(r.get("rating"))), _text(r.get("gen_id"))))
    ladder, plot_rows = [], []
    for rank, r in enumerate(records, 1):
        gen_id = _text(r.get("gen_id"))
        rating, low, high = _number(r.get("rating")), _number(r.get("ci_low")), _number(r.get("ci_high"))
        record = (fmt_int(_number(r.get("wins"))), fmt_int(_number(r.get("losses"))), fmt_int(_number(r.get("ties"))))
        ladder.append(
            {
                "rank": rank,
                "essay": gen_id,
                "concepts": essay_labels.get(gen_id, ""),
                "rating": fmt_score(rating),
                "interval": _interval_text(low, high),
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
    values = [v for r in plot_rows for v in (r["point"], r["low"], r["high"]) if not _missing(v)]
    plot = None
    if values:
        low, high = math.floor(min(values)), math.ceil(max(values))
        plot = _forest(plot_rows, low, high if high > low else low + 1)
    matches = _read_csv(reports_dir / TOURNAMENT_MATCHES_FILE)
    bias = (
        None if matches is None or matches.empty else describe_position_bias(position_bias(matches_from_table(matches)))
    )
    return {
        "ladder": ladder,
        "plot": plot,
        "position_bias": bias,
        "summary": _read_json(reports_dir / TOURNAMENT_SUMMARY_FILE),
    }


def _dedup_view(reports_dir: Path, essay_labels: dict[str, str]) -> dict | None:
    frame = _read_csv(reports_dir / DEDUP_CLUSTERS_FILE, numeric=("nearest_similarity",))
    if frame is None:
        return None
    clusters: dict[str, list[dict]] = {}
    for r in _records(frame):
        gen_id, representative = _text(r.get("gen_id")), _text(r.get("representative"))
        clusters.setdefault(_text(r.get("cluster")), []).append(
            {
                "essay": gen_id,
                "concepts": essay_labels.get(gen_id, ""),
                "representative": gen_id == representative,
                "similarity": fmt_score(_number(r.get("nearest_similarity"))),
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
        "summary": _read_json(reports_dir / DEDUP_SUMMARY_FILE),
    }


# --------------------------------------------------------------------------
# top essays
# --------------------------------------------------------------------------


def _locate(stored: str, gens_root: Path, stage: str, gen_id: str, name: str) -> Path | None:
    """The file on disk: looked up under `gens_root` first (the caller's store), else the stored path as is."""
    candidates = []
    parts = Path(stored).parts if stored else ()
    if len(parts) >= 3 and parts[-3] == stage and id_problem(parts[-2]) is None:
        candidates.append(gens_root / stage / parts[-2] / parts[-1])
    if gen_id and id_problem(gen_id) is None:
        candidates.append(gens_root / stage / gen_id / name)
    if stored:
        candidates.append(Path(stored))
    for path in candidates:
        if path.is_file():
            return path
    return None


def _href(path: Path | None, reports_dir: Path) -> str | None:
    if path is None:
        return None
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(reports_dir))
    return quote(relative.replace(os.sep, "/"))


def _read_preview(path: Path | None) -> tuple[str, int, bool]:
    if path is None:
        return "", 0, False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", 0, False
    return text[:ESSAY_PREVIEW_CHARS], len(text), len(text) > ESSAY_PREVIEW_CHARS


def _top_essays(
    top: pd.DataFrame,
    parsed: pd.DataFrame,
    pivot: pd.DataFrame,
    reports_dir: Path,
    gens_root: Path,
    imported: ImportedTexts,
) -> list[dict]:
    per_essay = {_text(r.get("parent_gen_id")): r for r in _records(pivot)}
    essays = {}
    for record in _records(parsed):
        essay = _text(record.get("parent_gen_id"))
        if essay and essay not in essays:
            essays[essay] = record
    by_path = {_text(r.get("evaluation_path")): r for r in _records(parsed) if _text(r.get("evaluation_path"))}
    groups: dict[str, list[dict]] = {}
    for record in _records(top):
        template = _text(record.get("evaluation_template"))
        essay = _text(record.get("parent_gen_id"))
        info = essays.get(essay, {})
        essay_file = _locate(_text(record.get("essay_path")), gens_root, "essay", essay, "parsed.txt")
        draft_id = _text(info.get("draft_gen_id"))
        draft_file = _locate(_text(record.get("draft_path")), gens_root, "draft", draft_id, "parsed.txt")
        evaluations = []
        for stored in filter(None, _text(record.get("evaluation_paths")).split(";")):
            row = by_path.get(stored, {})
            gen_id = _text(row.get("gen_id"))
            path = _locate(stored, gens_root, "evaluation", gen_id, Path(stored).name)
            judge = _text(row.get("evaluation_model")) or Path(stored).parent.name
            replicate = row.get("evaluation_replicate")
            label = judge if _missing(replicate) else f"{judge} #{int(replicate)}"
            evaluations.append(
                {
                    "label": label,
                    "href": _href(path, reports_dir),
                    "score": fmt_score(row.get("score")),
                    "stored": stored,
                }
            )
        text, length, truncated = _read_preview(essay_file)
        mean = pd.to_numeric(record.get("mean_score"), errors="coerce")
        background, colour = score_colour(mean)
        aggregate = per_essay.get(essay, {})
        n = _number(aggregate.get(f"{template}:n"))
        groups.setdefault(template, []).append(
            {
                "rank": len(groups.get(template, [])) + 1,
                "essay": essay,
                "mean": fmt_score(mean),
                "interval": _interval_text(
                    _number(aggregate.get(f"{template}:ci_low")), _number(aggregate.get(f"{template}:ci_high"))
                ),
                "n": "" if _missing(n) else int(n),
                "concepts": _text(aggregate.get("concepts")),
                "origin": imported.origin(essay),
                "imported": essay in imported.essays,
                "background": background,
                "colour": colour,
                "generation_model": _text(info.get("generation_model")),
                "generation_template": _text(info.get("generation_template")),
                "draft_template": _text(info.get("draft_template")),
                "combo": _text(info.get("combo_id")),
                "essay_href": _href(essay_file, reports_dir),
                "draft_href": _href(draft_file, reports_dir),
                "evaluations": evaluations,
                "text": text,
                "length": length,
                "truncated": truncated,
                "found": essay_file is not None,
            }
        )
    return [{"template": t, "essays": rows} for t, rows in groups.items()]


# --------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["score"] = fmt_score
    env.filters["num"] = fmt_int
    env.filters["cost"] = fmt_cost
    return env


def _percent(value) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "\u2013" if _missing(number) else f"{100 * float(number):.0f}%"


def _judge_means(means: pd.DataFrame) -> dict:
    if means is None or means.empty or "evaluation_model" not in means.columns:
        return {"templates": [], "rows": []}
    templates = [c for c in means.columns if c != "evaluation_model"]
    rows = []
    for r in _records(means):
        cells = []
        for t in templates:
            value = pd.to_numeric(r.get(t), errors="coerce")
            background, colour = score_colour(value)
            cells.append({"value": fmt_score(value), "background": background, "colour": colour})
        rows.append({"judge": _text(r.get("evaluation_model")), "cells": cells})
    return {"templates": templates, "rows": rows}


def report_context(reports_dir: Path, cohort_id: str, gens_root: Path) -> dict:
    """Everything the template shows, as plain data."""
    reports_dir, gens_root = Path(reports_dir), Path(gens_root)
    parsed = _read_parsed_scores(reports_dir)
    status_json = _read_json(reports_dir / "status.json")
    status = status_json or {}
    scored = parsed[parsed["score"].notna()]
    n_rows = len(parsed)

    def count(key: str, fallback):
        value = status.get(key)
        return int(value) if isinstance(value, (int, float)) else fallback

    errors_rows = parsed[parsed["error"] != ""]
    failures = status.get("failures") or {}
    overview = {
        "evaluations": count("evaluations", n_rows),
        "on_disk": count("on_disk", n_rows),
        "scored": len(scored),
        "score_errors": count("score_errors", len(errors_rows)),
        "failed": count("failed", len(failures)) if status_json is not None else None,
        "missing": count("missing", 0) if status_json is not None else None,
        "mean": float(scored["score"].mean()) if len(scored) else None,
        "sd": float(scored["score"].std(ddof=1)) if len(scored) >= 2 else None,
        "essays_scored": scored["parent_gen_id"].dropna().nunique(),
        "judges": sorted({str(j) for j in parsed["evaluation_model"].dropna()}),
        "templates": sorted({str(t) for t in parsed["evaluation_template"].dropna()}),
        "generation_models": sorted({str(m) for m in parsed["generation_model"].dropna()}),
    }
    gen_ids = _cohort_gen_ids(parsed, status, reports_dir.parent)
    usage = _usage(gens_root, gen_ids)
    imported = _imported(gens_root, gen_ids)
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

    error_list = [
        {
            "gen_id": _text(r.get("gen_id")),
            "essay": _text(r.get("parent_gen_id")),
            "template": _text(r.get("evaluation_template")),
            "judge": _text(r.get("evaluation_model")),
            "error": _text(r.get("error")),
        }
        for r in _records(errors_rows)
    ]
    failure_list = [{"gen_id": str(k), "error": str(v)} for k, v in sorted(failures.items())]

    has_scores = len(scored) > 0
    pivot = _table(reports_dir, "pivot", parsed, results.pivot_scores)
    essay_labels = {_text(r.get("parent_gen_id")): _text(r.get("concepts")) for r in _records(pivot)}
    essay_labels.update(
        {
            essay: imported.origin(essay)
            for essay in (*imported.essays, *imported.from_drafts)
            if not essay_labels.get(essay)
        }
    )  # the tournament and dedup tables name them too
    combo_labels = {_text(r.get("combo_id")): _text(r.get("concepts")) for r in _records(pivot)}
    context = {
        "cohort_id": cohort_id,
        "overview": overview,
        "usage": usage,
        "has_scores": has_scores,
        "has_status": status_json is not None,
        "error_list": error_list,
        "failure_list": failure_list,
        "score_max": SCORE_MAX,
        "confidence": f"{results.CONFIDENCE:.0%}",
        "tournament": _tournament_view(reports_dir, essay_labels),
        "dedup": _dedup_view(reports_dir, essay_labels),
        "files": [
            name
            for name in (
                *results.REPORT_FILES.values(),
                "status.json",
                TOURNAMENT_RATINGS_FILE,
                TOURNAMENT_MATCHES_FILE,
                TOURNAMENT_SUMMARY_FILE,
                DEDUP_CLUSTERS_FILE,
                DEDUP_SUMMARY_FILE,
            )
            if (reports_dir / name).is_file()
        ],
    }
    if not has_scores:
        return context

    agreement = _table(reports_dir, "judge_agreement", parsed, results.judge_agreement)
    top = _table(reports_dir, "top_score_paths", parsed, results.top_score_paths)
    summary = _table(reports_dir, "summary_statistics", parsed, results.summary_statistics)
    means = _table(reports_dir, "judge_template_means", parsed, results.judge_template_means)
    effects = _read_csv(reports_dir / results.REPORT_FILES["concept_effects"])
    pairs = _read_csv(reports_dir / results.REPORT_FILES["concept_pair_effects"])
    context.update(
        {
            "histograms": _histograms(parsed),
            "judge_means": _judge_means(means),
            "summaries": _summary_view(summary, combo_labels),
            "concept_effects": None if effects is None else _concept_view(effects, pairs),
            "heatmap": _heatmap(pivot, parsed, imported),
            "agreement": _agreement_plot(agreement, parsed),
            "alpha": _alpha_view(_read_json(reports_dir / results.REPORT_FILES["agreement"]), parsed),
            "top": _top_essays(top, parsed, pivot, reports_dir, gens_root, imported),
            "preview_chars": ESSAY_PREVIEW_CHARS,
        }
    )
    return context


def build_report(reports_dir: Path, cohort_id: str, gens_root: Path) -> str:
    """The cohort's report as one self-contained HTML page (inline CSS and SVG, no scripts, no external URLs)."""
    context = report_context(reports_dir, cohort_id, gens_root)
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def write_report(reports_dir: Path, cohort_id: str, gens_root: Path) -> Path:
    """Write ``reports_dir / "report.html"`` atomically."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    html = build_report(reports_dir, cohort_id, gens_root)
    target = reports_dir / REPORT_FILE
    atomic_write_text(target, html)
    return target
