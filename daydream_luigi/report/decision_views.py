"""The report's decision sections as view models: which essays pass each gate (the page's first section), the check
of the fixed inputs the last run made, and the judges held against people's labels.

Drawn from the files `report.decisions` and the run write: in the reports folder ``gate-<name>.csv`` (every essay
and its decision), ``dossiers/<gen_id>.json`` (linked, and the source of the gate file's sha256 and thresholds, which
the table does not hold: without a passing essay the page names the criteria only) and ``judge_vs_human.csv``; in
the cohort's folder, beside its manifest, ``neutrality.json``. The gates shown are those the cohort names (its
manifest), in its order, then any other gate whose table is in the folder (written by `daydream gate`, and as
current as that command left it).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.gates import PASS
from daydream_luigi.analysis.human import GATE_JUDGE
from daydream_luigi.core.neutrality import RECORD_FILE
from daydream_luigi.report.data import load_csv, load_json, locate, records
from daydream_luigi.report.decisions import DOSSIERS, JUDGE_VS_HUMAN_FILE, gate_file
from daydream_luigi.report.display import as_number, as_text, fmt_interval, fmt_score, is_missing, relative_href
from daydream_luigi.store.files import PARSED
from daydream_luigi.store.membership import MANIFEST

_GATE_PREFIX, _GATE_SUFFIX = gate_file("NAME").split("NAME")


def shown_gates(reports_dir: Path) -> tuple[list[str], set[str]]:
    """(the gates to show, in order; those the cohort names)."""
    manifest = load_json(reports_dir.parent / MANIFEST) or {}
    named = [str(name) for name in manifest.get("gates") or []]
    found = sorted(
        path.name[len(_GATE_PREFIX) : -len(_GATE_SUFFIX)] for path in reports_dir.glob(gate_file("*")) if path.is_file()
    )
    return [*named, *(name for name in found if name not in named)], set(named)


def _criteria(table: pd.DataFrame) -> list[str]:
    return [column[: -len(":value")] for column in table.columns if column.endswith(":value")]


def _criterion(row: dict, template: str) -> dict:
    n, judges = as_number(row.get(f"{template}:n")), as_number(row.get(f"{template}:judges"))
    return {
        "template": template,
        "value": fmt_score(as_number(row.get(f"{template}:value"))),
        "interval": fmt_interval(as_number(row.get(f"{template}:ci_low")), as_number(row.get(f"{template}:ci_high"))),
        "n": 0 if is_missing(n) else int(n),
        "judges": 0 if is_missing(judges) else int(judges),
    }


def _gate_record(dossier: Path, name: str) -> dict:
    """The gate's record in a dossier (its file, sha256 and criteria as decided), or nothing."""
    found = (load_json(dossier) or {}).get("gates", {}).get(name)
    return found if isinstance(found, dict) else {}


def _rules(recorded: dict) -> list[str]:
    """The gate's criteria as its record states them: 'judge-a: lower bound >= 7', then its judge rules."""
    rules = [
        f"{as_text(c.get('template'))}: {'mean' if c.get('by') == 'mean' else 'lower bound'} \u2265 "
        f"{fmt_score(c.get('min'))}"
        for c in recorded.get("criteria") or []
        if isinstance(c, dict)
    ]
    if recorded.get("min_judges") is not None:
        rules.append(f"{recorded['min_judges']} judge{'s' if recorded['min_judges'] != 1 else ''} or more")
    if recorded.get("max_judge_range") is not None:
        rules.append(f"judges' means within {fmt_score(recorded['max_judge_range'])}")
    return rules


def gate_views(
    reports_dir: Path, essay_labels: dict[str, str], essay_paths: dict[str, str], gens_root: Path
) -> list[dict]:
    """One view per gate shown: how many essays pass, each passing essay with its criteria and links to its dossier
    and essay file, the failing reasons counted, and every essay's decision; `decided` false when a gate the cohort
    names has no table yet."""
    names, named = shown_gates(reports_dir)
    views = []
    for name in names:
        table = load_csv(reports_dir / gate_file(name))
        view: dict = {"name": name, "named": name in named, "file": gate_file(name), "decided": table is not None}
        if table is None or "decision" not in table.columns:
            views.append({**view, "decided": False})
            continue
        criteria = _criteria(table)
        rows = records(table)
        passing, recorded = [], {}
        for row in rows:
            essay = as_text(row.get("gen_id"))
            if as_text(row.get("decision")) != PASS:
                continue
            dossier = reports_dir / DOSSIERS / f"{essay}.json"
            recorded = recorded or _gate_record(dossier, name)
            essay_file = locate(essay_paths.get(essay, ""), gens_root, "essay", essay, PARSED)
            passing.append(
                {
                    "essay": essay,
                    "concepts": essay_labels.get(essay, ""),
                    "criteria": [_criterion(row, template) for template in criteria],
                    "dossier_href": relative_href(dossier, reports_dir) if dossier.is_file() else None,
                    "essay_href": relative_href(essay_file, reports_dir),
                }
            )
        reasons = Counter(as_text(r.get("decision")) for r in rows if as_text(r.get("decision")) != PASS)
        views.append(
            {
                **view,
                "total": len(rows),
                "passed": len(passing),
                "criteria": criteria,
                "essays": passing,
                "reasons": [{"reason": reason, "count": count} for reason, count in reasons.most_common()],
                "rows": [
                    {
                        "essay": as_text(r.get("gen_id")),
                        "concepts": essay_labels.get(as_text(r.get("gen_id")), ""),
                        "decision": as_text(r.get("decision")),
                    }
                    for r in rows
                ],
                "sha256": as_text(recorded.get("sha256")),
                "gate_path": as_text(recorded.get("file")),
                "rules": _rules(recorded),
            }
        )
    return views


def neutrality_view(reports_dir: Path) -> dict:
    """What the last run's check of the fixed inputs recorded (neutrality.json): the rules file and its sha256, how
    many inputs, and with a target the highest similarity; `recorded` false when the folder has no record."""
    record = load_json(reports_dir.parent / RECORD_FILE)
    if record is None:
        return {"recorded": False, "file": RECORD_FILE}
    view = {
        "recorded": True,
        "file": RECORD_FILE,
        "href": f"../{RECORD_FILE}",
        "checked": bool(record.get("checked")),
        "rules_file": as_text(record.get("rules_file")),
    }
    if not view["checked"]:
        return view
    inputs = [i for i in record.get("inputs") or [] if isinstance(i, dict)]
    measured = [i for i in inputs if isinstance(i.get("similarity"), (int, float))]
    closest = max(measured, key=lambda i: i["similarity"]) if measured else None
    return {
        **view,
        "sha256": as_text(record.get("sha256")),
        "terms": [as_text(t) for t in record.get("forbidden") or []],
        "inputs": len(inputs),
        "target": as_text(record.get("target")),
        "max_similarity": record.get("max_similarity"),
        "closest": None
        if closest is None
        else {"source": as_text(closest.get("source")), "similarity": f"{closest['similarity']:.3f}"},
    }


def _statistic(value) -> str:
    number = as_number(value)
    return "\u2013" if is_missing(number) else f"{number:.2f}"


def people_view(reports_dir: Path) -> dict | None:
    """judge_vs_human.csv: per judge and template scored by people, how far the judge is from them; per gate held
    against people's verdicts, its precision and recall. None when the table does not exist."""
    table = load_csv(reports_dir / JUDGE_VS_HUMAN_FILE)
    if table is None or "judge" not in table.columns:
        return None
    judges, gates, unmeasured = [], [], 0
    for row in records(table):
        n = as_number(row.get("n"))
        n = 0 if is_missing(n) else int(n)
        if n == 0:
            unmeasured += 1
            continue
        if as_text(row.get("judge")) == GATE_JUDGE:
            counts = {key: as_text(row.get(key)) for key in ("true_pass", "false_pass", "false_fail", "true_fail")}
            gates.append(
                {
                    "gate": as_text(row.get("template")),
                    "n": n,
                    **counts,
                    "precision": _statistic(row.get("precision")),
                    "recall": _statistic(row.get("recall")),
                }
            )
        else:
            judges.append(
                {
                    "judge": as_text(row.get("judge")),
                    "template": as_text(row.get("template")),
                    "n": n,
                    "mean_abs_difference": _statistic(row.get("mean_abs_difference")),
                    "spearman_rho": _statistic(row.get("spearman_rho")),
                    "krippendorff_alpha": _statistic(row.get("krippendorff_alpha")),
                }
            )
    return {"judges": judges, "gates": gates, "unmeasured": unmeasured, "file": JUDGE_VS_HUMAN_FILE}
