"""The results table: each figure beside its ideal, the plain baseline, "before" and "after", as values and as ratios
to the ideal; the target applies to "after"."""

from dataclasses import dataclass, field

COLUMNS = ("rule floor", "baseline", "before", "after")


@dataclass
class Row:
    figure: str
    unit: str  # "s", "ms", "MB", "x", "latencies", ...
    ideal: float | None  # what a perfect run would measure (None: no such thing, e.g. memory)
    target: float | None  # "after" must be <= this (None: reported only)
    values: dict = field(default_factory=dict)  # column -> measured value (None: not measured / not reached)
    notes: dict = field(default_factory=dict)  # column -> text shown instead of a value (e.g. "> 60 s")

    @property
    def met(self) -> bool | None:
        value = self.values.get("after")
        if self.target is None or value is None:
            return None if self.target is None else False
        return value <= self.target

    def cell(self, column: str) -> str:
        if column in self.notes:
            return self.notes[column]
        value = self.values.get(column)
        if value is None:
            return ""
        text = _number(value, self.unit)
        if self.ideal and self.unit != "x":
            text += f" ({value / self.ideal:.2f}x)"
        return text


def _number(value: float, unit: str) -> str:
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    suffix = "" if unit == "x" else f" {unit}"
    return f"{value:.{digits}f}{suffix}" if unit != "x" else f"{value:.2f}x"


def _target(row: Row) -> str:
    if row.target is None:
        return ""
    if row.ideal and row.unit != "x":
        return f"<= {_number(row.target, row.unit)} ({row.target / row.ideal:.2f}x)"
    return f"<= {_number(row.target, row.unit)}"


def lines(rows: list[Row], markdown: bool = False) -> list[str]:
    header = ["figure", "ideal", "target", *COLUMNS, "met?"]
    body = [
        [
            row.figure,
            "" if row.ideal is None else _number(row.ideal, row.unit),
            _target(row),
            *(row.cell(column) for column in COLUMNS),
            {True: "yes", False: "NO", None: ""}[row.met],
        ]
        for row in rows
    ]
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
            "| " + " | ".join(cells) + " |" for cells in body
        ]
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    out += ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in body]
    return out
