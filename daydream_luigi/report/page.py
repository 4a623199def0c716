"""A self-contained HTML report of one cohort, built from its reports folder and the generation store: which
sections the page has, from which files, and the page written.

Inputs are the files `report.tables.write_tables`, `report.collect`, `report.decisions` and the run's neutrality
check write into ``data/cohorts/<cohort_id>/reports/`` (the decisions come first on the page:
`report.decision_views`) plus the ``metadata.json`` of the cohort's generations (tokens, cost, latency), read by
`report.data`; `report.views` and `report.charts` turn them into what the template shows.  The tournament
ladder and the near-duplicate clusters are read from ``TOURNAMENT_RATINGS_FILE`` and ``DEDUP_CLUSTERS_FILE`` when
those commands have run; their sections say "not run" otherwise. Texts imported from elsewhere (see `importer`), and
essays written from imported drafts, are marked with the label they were imported with wherever an essay is listed.

The page has no scripts, no external resources and no external links: charts are inline SVG or plain HTML tables,
all text goes through Jinja2 autoescaping, and links to generation files are relative to the reports folder so the
folder can be opened in a browser straight from disk.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from daydream_luigi.analysis.agreement import judge_agreement
from daydream_luigi.analysis.intervals import CONFIDENCE
from daydream_luigi.analysis.tables import judge_template_means, pivot_scores, summary_statistics, top_score_paths
from daydream_luigi.report.charts import agreement_plot, heatmap, histograms
from daydream_luigi.report.data import (
    ESSAY_PREVIEW_CHARS,
    cohort_gen_ids,
    derived_table,
    imported_texts,
    load_csv,
    load_json,
    read_parsed_scores,
    records,
    stage_usage,
)
from daydream_luigi.report.decision_views import gate_views, neutrality_view, people_view
from daydream_luigi.report.display import SCORE_MAX, as_text, fmt_cost, fmt_int, fmt_score
from daydream_luigi.report.tables import (
    DEDUP_CLUSTERS_FILE,
    DEDUP_SUMMARY_FILE,
    FOLDER_FILES,
    REPORT_FILES,
    STATUS_FILE,
    TOURNAMENT_MATCHES_FILE,
    TOURNAMENT_RATINGS_FILE,
    TOURNAMENT_SUMMARY_FILE,
)
from daydream_luigi.report.views import (
    alpha_view,
    concept_views,
    dedup_view,
    error_view,
    failure_view,
    judge_means,
    overview_view,
    summary_views,
    top_essays,
    tournament_view,
)
from daydream_luigi.store.files import atomic_write_text

TEMPLATE_DIR = Path(__file__).with_name("templates")
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE = "report.html"


def _environment() -> jinja2.Environment:
    """Jinja with autoescaping on and undefined names an error, so a template typo never renders as blank."""
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


def report_context(reports_dir: Path, cohort_id: str, gens_root: Path) -> dict:
    """Everything the template shows, as plain data: each section's view of the files it is drawn from."""
    reports_dir, gens_root = Path(reports_dir), Path(gens_root)
    parsed = read_parsed_scores(reports_dir)
    status_json = load_json(reports_dir / STATUS_FILE)
    gen_ids = cohort_gen_ids(parsed, status_json or {}, reports_dir.parent)
    usage = stage_usage(gens_root, gen_ids)
    imported = imported_texts(gens_root, gen_ids)
    scored = parsed[parsed["score"].notna()]
    has_scores = len(scored) > 0
    pivot = derived_table(reports_dir, "pivot", parsed, pivot_scores)
    essay_labels = {as_text(r.get("parent_gen_id")): as_text(r.get("concepts")) for r in records(pivot)}
    essay_labels.update(
        {
            essay: imported.origin(essay)
            for essay in (*imported.essays, *imported.from_drafts)
            if not essay_labels.get(essay)
        }
    )  # the tournament and dedup tables name them too
    combo_labels = {as_text(r.get("combo_id")): as_text(r.get("concepts")) for r in records(pivot)}
    essay_paths = {as_text(r.get("parent_gen_id")): as_text(r.get("essay_path")) for r in records(parsed)}
    context = {
        "cohort_id": cohort_id,
        "gates": gate_views(reports_dir, essay_labels, essay_paths, gens_root),
        "neutrality": neutrality_view(reports_dir),
        "people": people_view(reports_dir),
        "overview": overview_view(parsed, status_json, usage, imported),
        "usage": usage,
        "has_scores": has_scores,
        "has_status": status_json is not None,
        "error_list": error_view(parsed),
        "failure_list": failure_view(status_json),
        "score_max": SCORE_MAX,
        "confidence": f"{CONFIDENCE:.0%}",
        "tournament": tournament_view(
            load_csv(
                reports_dir / TOURNAMENT_RATINGS_FILE, numeric=("rating", "ci_low", "ci_high", "wins", "losses", "ties")
            ),
            load_csv(reports_dir / TOURNAMENT_MATCHES_FILE),
            load_json(reports_dir / TOURNAMENT_SUMMARY_FILE),
            essay_labels,
        ),
        "dedup": dedup_view(
            load_csv(reports_dir / DEDUP_CLUSTERS_FILE, numeric=("nearest_similarity",)),
            load_json(reports_dir / DEDUP_SUMMARY_FILE),
            essay_labels,
        ),
        "files": [name for name in FOLDER_FILES if (reports_dir / name).is_file()],
    }
    if not has_scores:
        return context

    agreement = derived_table(reports_dir, "judge_agreement", parsed, judge_agreement)
    top = derived_table(reports_dir, "top_score_paths", parsed, top_score_paths)
    summary = derived_table(reports_dir, "summary_statistics", parsed, summary_statistics)
    means = derived_table(reports_dir, "judge_template_means", parsed, judge_template_means)
    effects = load_csv(reports_dir / REPORT_FILES["concept_effects"])
    pairs = load_csv(reports_dir / REPORT_FILES["concept_pair_effects"])
    context.update(
        {
            "histograms": histograms(parsed),
            "judge_means": judge_means(means),
            "summaries": summary_views(summary, combo_labels),
            "concept_effects": None if effects is None else concept_views(effects, pairs),
            "heatmap": heatmap(pivot, parsed, imported),
            "agreement": agreement_plot(agreement, parsed),
            "alpha": alpha_view(load_json(reports_dir / REPORT_FILES["agreement"]), parsed),
            "top": top_essays(top, parsed, pivot, reports_dir, gens_root, imported),
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
