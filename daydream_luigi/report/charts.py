"""The geometry of the report's charts: score histograms, the heatmap of essays x judges, the agreement plot and
point-and-interval ("forest") plots.

The page has no scripts, so every chart is inline SVG or an HTML table drawn by the template; all positions, sizes
and colours are computed here, in Python, where they can be tested, and the template only places them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from daydream_luigi.analysis.agreement import AGREEMENT_BOUNDS, AGREEMENT_CLASSES, POOR, SINGLE
from daydream_luigi.report.data import ImportedTexts, records
from daydream_luigi.report.display import (
    SCORE_MAX,
    SCORE_MIN,
    as_number,
    as_text,
    descending,
    fmt_interval,
    fmt_score,
    is_missing,
    score_colour,
    shorten,
)

#: At most this many (essay, template) units are drawn in the agreement plot (widest judge ranges first).
AGREEMENT_PLOT_ROWS = 120
#: The colour of each agreement class (see `analysis.agreement`), and the rule the legend states for it.
AGREEMENT_COLOURS = {"high": "#2e8b57", "moderate": "#3b7dd8", "low": "#e08a1e", POOR: "#c9352b", SINGLE: "#9aa0a6"}
AGREEMENT_RULES = {
    **{name: f"range \u2264 {bound}" for name, bound in AGREEMENT_BOUNDS},
    POOR: f"range > {AGREEMENT_BOUNDS[-1][1]}",
    SINGLE: "one judge",
}
#: The marker of each judge in the agreement plot, in the judges' sorted order (repeating after four).
MARKERS = ("circle", "square", "diamond", "triangle")
NOTE_CHAR_PX = 7.0  # width of one character of the notes beside a plot (12 px sans-serif, generously)
LABEL_CHAR_PX = 7.6  # ... and of a row's label, which has more capitals and wide letters (measured in Chromium)


@dataclass
class Histogram:
    """One judge's (or all judges') scores on one template, counted per whole point, with its bars' geometry."""

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


def histograms(parsed: pd.DataFrame) -> list[dict]:
    """Per evaluation template: a histogram per judge, and one of all judges together when there are several."""
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


def heatmap(pivot: pd.DataFrame, parsed: pd.DataFrame, imported: ImportedTexts) -> dict:
    """Essays x (template, judge) cells coloured by score, each row with its per-template mean and interval."""
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
    for record in records(pivot):
        cells = []
        for column in columns:
            value = as_number(record.get(column["name"]))
            background, colour = score_colour(value)
            cells.append(
                {
                    "column": column["name"],
                    "value": fmt_score(value),
                    "missing": is_missing(value),
                    "raw": "" if is_missing(value) else repr(value),
                    "background": background,
                    "colour": colour,
                }
            )
        aggregates = []
        for template in templates:
            low, high = (as_number(record.get(f"{template}:{k}")) for k in ("ci_low", "ci_high"))
            mean = as_number(record.get(f"{template}:mean"))
            background, colour = score_colour(mean)
            n = as_number(record.get(f"{template}:n"))
            aggregates.append(
                {
                    "template": template,
                    "mean": mean,
                    "value": fmt_score(mean),
                    "interval": fmt_interval(low, high),
                    "n": "" if is_missing(n) else int(n),
                    "background": background,
                    "colour": colour,
                }
            )
        essay = as_text(record.get("parent_gen_id"))
        rows.append(
            {
                "essay": essay,
                "combo": as_text(record.get("combo_id")),
                "origin": imported.origin(essay),
                "concepts": as_text(record.get("concepts")),
                "draft_template": as_text(record.get("draft_template")),
                "generation_template": as_text(record.get("generation_template")),
                "generation_model": as_text(record.get("generation_model")),
                "cells": cells,
                "aggregates": aggregates,
            }
        )
    # Best first on the first template, then the next; an essay without a score on a template sorts after others.
    rows.sort(key=lambda r: (*(descending(a["mean"]) for a in r["aggregates"]), r["essay"]))
    legend = []
    for v in range(SCORE_MIN, SCORE_MAX + 1):
        background, colour = score_colour(v)
        legend.append({"value": v, "background": background, "colour": colour})
    return {"columns": columns, "templates": templates, "rows": rows, "legend": legend}


def agreement_plot(agreement: pd.DataFrame, parsed: pd.DataFrame) -> dict:
    """The count of each agreement class, and each judge's score on the units with the widest judge ranges."""
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

    rows_by_unit = records(agreement)
    classes = Counter(as_text(r.get("agreement")) for r in rows_by_unit)
    total = sum(classes.values())
    summary = []
    for name in (*AGREEMENT_CLASSES, SINGLE):
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
    for r in rows_by_unit:
        count = pd.to_numeric(r.get("judge_count"), errors="coerce")
        if is_missing(count) or count < 2:
            continue
        key = (as_text(r.get("parent_gen_id")), as_text(r.get("evaluation_template")))
        units.append(
            {
                "essay": key[0],
                "template": key[1],
                "range": float(pd.to_numeric(r.get("range"))),
                "mean": float(pd.to_numeric(r.get("mean"))),
                "class": as_text(r.get("agreement")),
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
        colour = AGREEMENT_COLOURS.get(unit["class"], AGREEMENT_COLOURS[SINGLE])
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
                "essay_label": shorten(unit["essay"], 24),
                "template_label": shorten(unit["template"], 20),
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


def _ticks(low: float, high: float) -> list[float]:
    """Axis ticks from low to high at a round step, at most eleven."""
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if (high - low) / s <= 10)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 6) for i in range(int((high - first) / step + 1e-9) + 1)]


def forest(rows: list[dict], low: float, high: float, reference: float | None = None) -> dict:
    """Geometry of a point-and-interval plot; each row has label, title, point, low, high and note.

    With a ``reference`` (0 for differences), rows whose interval lies wholly on one side of it are marked.
    """
    plot_w, right_w, row_h, top, bottom = 440, 230, 22, 26, 8
    labels = [shorten(row["label"], 40) for row in rows]
    label_w = max(120, 24 + round(LABEL_CHAR_PX * max(map(len, labels), default=0)))  # no label is cut at the edge

    def x(value: float) -> float:
        return round(label_w + (min(max(value, low), high) - low) / (high - low) * plot_w, 2)

    drawn = []
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        has_interval = not (is_missing(row["low"]) or is_missing(row["high"]))
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
                "x": None if is_missing(row["point"]) else x(row["point"]),
                "x_low": x(row["low"]) if has_interval else None,
                "x_high": x(row["high"]) if has_interval else None,
                "point_text": fmt_score(row["point"]),
                "interval": fmt_interval(row["low"], row["high"]),
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


def symmetric_domain(values: list[float]) -> tuple[float, float]:
    """An axis centred on 0 wide enough for every value (at least -1..1), in whole points, or fives beyond 10."""
    finite = [abs(v) for v in values if not is_missing(v)]
    bound = max([1.0, *finite])
    bound = math.ceil(bound) if bound <= 10 else math.ceil(bound / 5) * 5
    return -float(bound), float(bound)
