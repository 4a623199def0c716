"""How one value looks on the report page: scores, counts, costs, intervals and the colour of a score.

Every chart and view shows numbers the same way (two decimals at most, an en dash for a missing value, the same
colour for the same score), because they all format through here; Jinja's filters are these functions too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from daydream_luigi.core import parsers

#: The score scale the parsers normalise every verdict to, in whole points (histogram bins, legend and axes).
SCORE_MIN, SCORE_MAX = int(parsers.SCORE_MIN), int(parsers.SCORE_MAX)

# Score colour scale (value on 0..10 -> RGB): warm for low scores, neutral in the middle, blue for high ones.
_SCALE = (
    (0.0, (179, 58, 58)),
    (2.5, (232, 149, 107)),
    (5.0, (244, 241, 234)),
    (7.5, (116, 169, 207)),
    (10.0, (31, 95, 153)),
)


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def as_text(value) -> str:
    return "" if is_missing(value) else str(value)


def as_number(value) -> float:
    number = pd.to_numeric(value, errors="coerce")
    return math.nan if is_missing(number) else float(number)


def fmt_score(value) -> str:
    """A score for display: at most two decimals, no trailing zeros (7, 6.5, 6.33); an en dash when missing."""
    if is_missing(value):
        return "\u2013"
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def fmt_int(value) -> str:
    return f"{int(value):,}"


def fmt_cost(value: float | None) -> str:
    if value is None:
        return "not reported"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def fmt_percent(value) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "\u2013" if is_missing(number) else f"{100 * float(number):.0f}%"


def fmt_interval(low, high) -> str:
    return "no interval" if is_missing(low) or is_missing(high) else f"[{fmt_score(low)}, {fmt_score(high)}]"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def descending(value: float) -> tuple[bool, float]:
    """Sort key: largest first, missing values last."""
    return (True, 0.0) if is_missing(value) else (False, -value)


def score_colour(value) -> tuple[str, str]:
    """(background, text colour) of a score cell."""
    if is_missing(value):
        return "#f1f3f4", "#80868b"
    v = min(max(float(value), SCORE_MIN), SCORE_MAX)
    for (x0, c0), (x1, c1) in zip(_SCALE, _SCALE[1:]):
        if v <= x1:
            t = 0.0 if x1 == x0 else (v - x0) / (x1 - x0)
            rgb = tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
            break
    luminance = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("#ffffff" if luminance < 0.55 else "#202124")


def relative_href(path: Path | None, reports_dir: Path) -> str | None:
    """A link to a file relative to the reports folder, so the page opens straight from disk."""
    if path is None:
        return None
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(reports_dir))
    return quote(relative.replace(os.sep, "/"))
