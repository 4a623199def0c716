"""Tests for daydream_luigi.report (page, views, charts, data): the self-contained HTML cohort report."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS, ConceptMap
from daydream_luigi.report.data import ESSAY_PREVIEW_CHARS
from daydream_luigi.report.page import build_report, write_report
from daydream_luigi.report.tables import write_tables

COHORT = "coh-report"
NOVELTY, COHERENCE = "novelty", "coherence"
JA, JB = "judge-a", "judge-b"
SCRIPT = "<script>alert(1)</script>"
LONG_TAIL = "TAIL-MARKER-NOT-SHOWN"

# essay gen_id: (draft gen_id, combo, draft template, essay template, generation model, essay text)
ESSAYS = {
    "essay00000000001": (
        "draft00000000001",
        "combo_v1_aaaaaaaaaaaa",
        "ladder",
        "polish",
        "gen-x",
        "Tidal turbines and ant trails share a rhythm.\n\nSecond paragraph.",
    ),
    "essay00000000002": (
        "draft00000000002",
        "combo_v1_bbbbbbbbbbbb",
        "sketch",
        "polish",
        "gen-y",
        f"An essay that quotes markup: {SCRIPT} & more <b>bold</b> claims.",
    ),
    "essay00000000003": (
        "draft00000000003",
        "combo_v1_cccccccccccc",
        "ladder",
        "verbatim",
        "gen-x",
        "Sourdough starters as distributed caches. " * 150 + LONG_TAIL,
    ),
}
CONCEPTS = ConceptMap(
    {
        "combo_v1_aaaaaaaaaaaa": ("tides", "ants"),
        "combo_v1_bbbbbbbbbbbb": ("ants", "bread"),
        "combo_v1_cccccccccccc": ("bread", "tides"),
    },
    {"tides": "Tidal power", "ants": "Ant trails", "bread": "Sourdough"},
)
NAN = math.nan
# evaluation gen_id, essay, template, judge, score (NaN = the score error)
EVALS = [
    ("eval000000000001", "essay00000000001", NOVELTY, JA, 9.0),
    ("eval000000000002", "essay00000000001", NOVELTY, JB, 8.0),
    ("eval000000000003", "essay00000000001", COHERENCE, JA, 7.0),
    ("eval000000000004", "essay00000000001", COHERENCE, JB, 7.0),
    ("eval000000000005", "essay00000000002", NOVELTY, JA, 2.0),
    ("eval000000000006", "essay00000000002", NOVELTY, JB, 7.0),
    ("eval000000000007", "essay00000000002", COHERENCE, JA, 6.5),
    ("eval000000000008", "essay00000000002", COHERENCE, JB, 4.5),
    ("eval000000000009", "essay00000000003", NOVELTY, JA, 5.0),
    ("eval000000000010", "essay00000000003", NOVELTY, JB, 6.0),
    ("eval000000000011", "essay00000000003", COHERENCE, JA, 4.0),
    ("eval000000000012", "essay00000000003", COHERENCE, JB, NAN),
]
FAILED = {"eval000000000013": "HTTP 500 from provider after 3 attempts"}
MISSING = ["eval000000000014"]
# stage: (prompt_tokens, completion_tokens, cost, latency_s) for every generation of that stage
USAGE = {"draft": (400, 300, 0.002, 2.5), "essay": (350, 500, 0.003, 4.0), "evaluation": (600, 50, 0.001, 1.0)}


def _write_gen(gens: Path, stage: str, gen_id: str, text: str, file: str, **extra) -> Path:
    directory = gens / stage / gen_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / file).write_text(text, encoding="utf-8")
    prompt, completion, cost, latency = USAGE[stage]
    meta = {
        "stage": stage,
        "gen_id": gen_id,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost": cost,
        "latency_s": latency,
        "attempts": [{"n": 1, "outcome": "ok"}],
        **extra,
    }
    (directory / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory / file


def build_store(root: Path) -> tuple[Path, Path, pd.DataFrame]:
    """A hand-made generation store and the cohort's report tables; returns (reports_dir, gens_root, frame)."""
    gens = root / "data" / "gens"
    reports_dir = root / "data" / "cohorts" / COHORT / "reports"
    paths = {}
    for essay, (draft, combo, _dt, _et, _gm, text) in ESSAYS.items():
        paths[essay] = (
            _write_gen(gens, "essay", essay, text, "parsed.txt"),
            _write_gen(gens, "draft", draft, f"Draft notes for {combo}.", "parsed.txt"),
        )
    rows = []
    for gen_id, essay, template, judge, score in EVALS:
        draft, combo, draft_t, essay_t, model, _text = ESSAYS[essay]
        error = "no score found in the answer" if math.isnan(score) else ""
        raw = _write_gen(
            gens,
            "evaluation",
            gen_id,
            f"Reasoning...\nSCORE: {score:g}\n",
            "raw.txt",
            score=None if error else score,
            score_max=10.0,
            error=error or None,
        )
        rows.append(
            {
                "cohort_id": COHORT,
                "gen_id": gen_id,
                "parent_gen_id": essay,
                "evaluation_template": template,
                "evaluation_model": judge,
                "evaluation_replicate": 1,
                "score": score,
                "score_max": 10.0,
                "error": error,
                "combo_id": combo,
                "draft_gen_id": draft,
                "draft_template": draft_t,
                "generation_template": essay_t,
                "generation_model": model,
                "evaluation_path": str(raw),
                "essay_path": str(paths[essay][0]),
                "draft_path": str(paths[essay][1]),
            }
        )
    frame = pd.DataFrame(rows, columns=PARSED_SCORES_COLUMNS)
    write_tables(frame, reports_dir, CONCEPTS)
    status = {
        "evaluations": len(EVALS) + len(FAILED) + len(MISSING),
        "on_disk": len(EVALS),
        "score_errors": sum(math.isnan(e[4]) for e in EVALS),
        "failed": len(FAILED),
        "missing": len(MISSING),
        "failures": FAILED,
    }
    (reports_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    return reports_dir, gens, frame


class _Collector(HTMLParser):
    """Collects heatmap cells, stat cards and link targets."""

    def __init__(self):
        super().__init__()
        self.cells: list[dict] = []
        self.hrefs: list[str] = []
        self.stats: dict[str, str] = {}
        self._cell = None
        self._stat_key = None
        self._in_value = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "td" and "hm-cell" in classes:
            self._cell = {"essay": a.get("data-essay"), "column": a.get("data-column"), "text": ""}
        if tag == "div" and "stat" in classes:
            self._stat_key = a.get("data-stat")
        if tag == "div" and "stat-value" in classes and self._stat_key:
            self._in_value = True
            self.stats[self._stat_key] = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._cell["text"] = self._cell["text"].strip()
            self.cells.append(self._cell)
            self._cell = None
        if tag == "div" and self._in_value:
            self._in_value = False
            self.stats[self._stat_key] = self.stats[self._stat_key].strip()
            self._stat_key = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_value:
            self.stats[self._stat_key] += data


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


@pytest.fixture()
def store(tmp_path):
    return build_store(tmp_path)


@pytest.fixture()
def report(store):
    reports_dir, gens, frame = store
    path = write_report(reports_dir, COHORT, gens)
    return path, path.read_text(encoding="utf-8")


def _display(value: float) -> str:
    return "\u2013" if math.isnan(value) else f"{value:g}"


def test_write_report_is_atomic_and_in_reports_dir(store, report):
    reports_dir = store[0]
    path, html = report
    assert path == reports_dir / "report.html"
    assert html.startswith("<!DOCTYPE html>")
    assert not [p for p in os.listdir(reports_dir) if p.endswith(".tmp")]
    # Deterministic: the same inputs give the same page.
    assert build_report(reports_dir, COHORT, store[1]) == html


def test_overview_numbers(report):
    _, html = report
    stats = parse(html).stats
    scores = [e[4] for e in EVALS if not math.isnan(e[4])]
    n_gens = {"draft": len(ESSAYS), "essay": len(ESSAYS), "evaluation": len(EVALS)}
    prompt = sum(USAGE[s][0] * n for s, n in n_gens.items())
    completion = sum(USAGE[s][1] * n for s, n in n_gens.items())
    cost = sum(USAGE[s][2] * n for s, n in n_gens.items())
    assert (prompt, completion) == (9450, 3000)
    assert stats["evaluations"] == "14"
    assert stats["scored"] == str(len(scores)) == "11"
    assert stats["score_errors"] == "1"
    assert stats["failed"] == "1"
    assert stats["missing"] == "1"
    assert stats["drafts"] == "3"
    assert stats["essays"] == "3"
    assert stats["tokens"] == "12,450"
    assert "9,450 prompt + 3,000 completion" in html
    assert stats["cost"] == f"${cost:.4f}" == "$0.0270"
    assert stats["mean_score"] == f"{sum(scores) / len(scores):g}" == "6"
    # failures and the score error are listed
    assert "eval000000000013" in html and "HTTP 500 from provider" in html
    assert "no score found in the answer" in html


def test_heatmap_has_one_cell_per_pivot_cell(store, report):
    reports_dir = store[0]
    _, html = report
    pivot = pd.read_csv(reports_dir / "pivot.csv", dtype={"parent_gen_id": str})
    meta = {"parent_gen_id", "combo_id", "concepts", "draft_template", "generation_template", "generation_model"}
    score_columns = [c for c in pivot.columns if c not in meta and ":" not in c]
    assert score_columns == ["coherence_judge-a", "coherence_judge-b", "novelty_judge-a", "novelty_judge-b"]
    cells = parse(html).cells
    assert len(cells) == len(pivot) * len(score_columns) == 12
    by_key = {}
    for cell in cells:
        assert (cell["essay"], cell["column"]) not in by_key, cell
        by_key[(cell["essay"], cell["column"])] = cell["text"]
    for _, row in pivot.iterrows():
        for column in score_columns:
            assert by_key[(row["parent_gen_id"], column)] == _display(float(row[column])), (
                row["parent_gen_id"],
                column,
            )
    assert by_key[("essay00000000003", "coherence_judge-b")] == "\u2013"  # the score error leaves a hole
    assert by_key[("essay00000000002", "coherence_judge-a")] == "6.5"


def test_text_is_escaped_and_page_is_self_contained(report):
    _, html = report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html.lower() and "@import" not in html
    assert "<svg" in html


def test_long_essay_is_truncated(report):
    _, html = report
    assert "Sourdough starters as distributed caches." in html
    assert LONG_TAIL not in html
    assert f"truncated after {ESSAY_PREVIEW_CHARS:,}" in html


def test_links_are_relative_and_resolve(store, report):
    reports_dir, gens, _ = store
    _, html = report
    hrefs = [h for h in parse(html).hrefs if not h.startswith("#")]
    assert hrefs
    for href in hrefs:
        assert "://" not in href and not href.startswith("/"), href
        assert (reports_dir / unquote(href)).resolve().is_file(), href
    targets = {(reports_dir / unquote(h)).resolve() for h in hrefs}
    top_essay = "essay00000000001"  # best mean on both templates
    assert (gens / "essay" / top_essay / "parsed.txt").resolve() in targets
    assert (gens / "draft" / "draft00000000001" / "parsed.txt").resolve() in targets
    assert (gens / "evaluation" / "eval000000000001" / "raw.txt").resolve() in targets


def test_links_survive_a_moved_store(store, tmp_path):
    """Stored absolute paths that no longer exist are looked up under gens_root instead."""
    reports_dir, gens, _ = store
    moved = tmp_path / "elsewhere" / "gens"
    shutil.move(str(gens), str(moved))
    html = build_report(reports_dir, COHORT, moved)
    hrefs = [h for h in parse(html).hrefs if not h.startswith("#")]
    essay_links = [h for h in hrefs if h.endswith("parsed.txt")]
    assert essay_links
    for href in hrefs:
        assert (reports_dir / unquote(href)).resolve().is_file(), href
    assert parse(html).stats["tokens"] == "12,450"


def test_agreement_section(store, report):
    reports_dir = store[0]
    _, html = report
    alpha = json.loads((reports_dir / "agreement.json").read_text())["alpha"]
    assert f"\u03b1 = {alpha:.3f}" in html
    classes = pd.read_csv(reports_dir / "judge_agreement.csv")["agreement"].value_counts()
    # essay 2 / novelty: judges 2 and 7 -> poor; essay 1 / coherence: 7 and 7 -> high
    assert classes["poor"] >= 1 and classes["high"] >= 1
    for name, count in classes.items():
        assert f'data-class="{name}"' in html
        assert f"{name} (" in html and f"): {count}" in html
    assert html.count('class="unit-row"') == int(
        (pd.read_csv(reports_dir / "judge_agreement.csv")["judge_count"] >= 2).sum()
    )


def test_empty_cohort(tmp_path):
    reports_dir = tmp_path / "data" / "cohorts" / "empty" / "reports"
    write_tables(pd.DataFrame(columns=PARSED_SCORES_COLUMNS), reports_dir)
    (reports_dir / "status.json").write_text(
        json.dumps({"evaluations": 4, "on_disk": 0, "score_errors": 0, "failed": 0, "missing": 4, "failures": {}})
    )
    path = write_report(reports_dir, "empty", tmp_path / "data" / "gens")
    html = path.read_text(encoding="utf-8")
    assert "No scored evaluations yet" in html
    stats = parse(html).stats
    assert stats["evaluations"] == "4" and stats["missing"] == "4" and stats["scored"] == "0"
    assert stats["tokens"] == "0" and stats["cost"] == "\u2013" and "not reported by the provider" in html
    assert 'class="hm-cell' not in html and 'id="heatmap"' not in html
    assert "http://" not in html and "https://" not in html


def test_cohort_with_no_report_files_at_all(tmp_path):
    html = build_report(tmp_path / "nothing" / "reports", "bare", tmp_path / "gens")
    assert "No scored evaluations yet" in html
    assert parse(html).stats["failed"] == "n/a"


def test_only_errors_is_treated_as_empty(tmp_path):
    reports_dir, gens, frame = build_store(tmp_path)
    frame = frame.assign(score=NAN, error="no score found")
    write_tables(frame, reports_dir)
    frame.to_csv(reports_dir / "parsed_scores.csv", index=False)
    html = build_report(reports_dir, COHORT, gens)
    assert "No scored evaluations yet" in html
    assert parse(html).stats["scored"] == "0"


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed")
def test_headless_chromium_renders_a_screenshot(report, tmp_path):
    path, _ = report
    png = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,2000",
        f"--screenshot={png}",
        path.resolve().as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert png.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- research loop sections (issue 12)


class _Plots(HTMLParser):
    """The rows of every point-and-interval plot, by its data-plot name, in page order."""

    def __init__(self):
        super().__init__()
        self.plots: list[tuple[str, list[dict]]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "forest" in (a.get("class") or "").split():
            self.plots.append((a["data-plot"], []))
        if tag == "g" and a.get("class") == "interval-row":
            self.plots[-1][1].append({k: a[f"data-{k}"] for k in ("label", "point", "interval")})


def plots(html: str) -> list[tuple[str, list[dict]]]:
    collector = _Plots()
    collector.feed(html)
    return collector.plots


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def test_concept_names_appear_wherever_combos_do(report):
    _, html = report
    heatmap = _section(html, "heatmap")
    for essay, (_draft, combo, *_rest) in ESSAYS.items():
        label = CONCEPTS.label(combo)
        assert f'<td class="label concepts" title="combo {combo}">{label}</td>' in heatmap, essay
    assert "<strong>Ant trails + Tidal power</strong>" in _section(html, "top")  # essay 1, best on both templates
    summary = _section(html, "comparisons")
    assert "<td>Ant trails + Sourdough (combo_v1_bbbbbbbbbbbb)</td>" in summary


def test_concept_effects_are_plotted_with_their_intervals(store, report):
    reports_dir = store[0]
    _, html = report
    effects = pd.read_csv(reports_dir / "concept_effects.csv")
    concept_plots = [rows for name, rows in plots(html) if name == "concepts"]
    assert len(concept_plots) == 2  # coherence, then novelty
    # novelty: essays 1 (9, 8), 2 (2, 7), 3 (5, 6) -> 8.5, 4.5, 5.5; tides in 1 and 3: 7 vs 4.5 -> +2.5
    novelty = effects[effects["evaluation_template"] == NOVELTY].set_index("concept")
    assert novelty.loc["Tidal power", "difference"] == 2.5
    assert [r["label"] for r in concept_plots[1]] == ["Tidal power", "Ant trails", "Sourdough"]  # largest first
    assert [r["point"] for r in concept_plots[1]] == ["2.5", "1", "-3.5"]
    # one essay without the concept: no interval, and the plot says so instead of drawing one
    assert all(r["interval"] == "no interval" for r in concept_plots[1])
    assert "Ant trails + Tidal power</td>" in _section(html, "concepts")  # the pairs table names both


def test_templates_and_models_are_compared_with_intervals(store, report):
    reports_dir = store[0]
    _, html = report
    summary = pd.read_csv(reports_dir / "summary_statistics.csv")
    judges = summary[(summary["evaluation_template"] == COHERENCE) & (summary["grouping"] == "evaluation_model")]
    # coherence by judge-a: essays 7, 6.5, 4 -> mean 5.83, t interval over three essays
    row = judges.set_index("group").loc[JA]
    assert row["n"] == 3 and row["mean"] == pytest.approx(17.5 / 3)
    by_judge = [rows for name, rows in plots(html) if name == "evaluation_model"][0]
    assert by_judge[0] == {"label": JA, "point": "5.83", "interval": f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"}
    assert by_judge[0]["interval"] == "[1.84, 9.83]"
    names = [name for name, _ in plots(html)]
    assert names.count("generation_template") == names.count("generation_model") == 2  # per evaluation template


def test_a_single_judge_cohort_says_why_agreement_is_undefined(tmp_path):
    reports_dir, gens, frame = build_store(tmp_path)
    write_tables(frame[frame["evaluation_model"] == JA], reports_dir, CONCEPTS)
    html = build_report(reports_dir, COHORT, gens)
    agreement = _section(html, "agreement")
    assert "one judge scored these essays; agreement between judges needs two judges or more" in agreement
    assert "\u03b1 =" not in agreement and "reliability" not in agreement
    assert 'class="unit-row"' not in agreement


def test_tournament_and_dedup_say_not_run_until_their_files_exist(store, report):
    reports_dir, gens, _ = store
    _, html = report
    assert "Not run: no <code>tournament_ratings.csv</code>" in _section(html, "tournament")
    assert "Not run: no <code>dedup_clusters.csv</code>" in _section(html, "dedup")
    (reports_dir / "tournament_ratings.csv").write_text(
        "gen_id,rating,ci_low,ci_high,wins,losses,ties\n"
        "essay00000000002,-0.3,-1.1,0.5,2,3,1\nessay00000000001,1.2,0.4,2.0,5,1,0\n"
    )
    (reports_dir / "dedup_clusters.csv").write_text(
        "gen_id,cluster,representative,nearest_similarity\n"
        "essay00000000003,c0,essay00000000001,0.91\nessay00000000001,c0,essay00000000001,0.91\n"
        "essay00000000002,c1,essay00000000002,0.42\n"
    )
    html = build_report(reports_dir, COHORT, gens)
    tournament = _section(html, "tournament")
    ladder = [rows for name, rows in plots(html) if name == "tournament"][0]
    assert ladder == [
        {"label": "#1 essay00000000001", "point": "1.2", "interval": "[0.4, 2]"},
        {"label": "#2 essay00000000002", "point": "-0.3", "interval": "[-1.1, 0.5]"},
    ]
    assert (
        '<td class="id">essay00000000001</td><td>Ant trails + Tidal power</td>\n        '
        '<td class="num">1.2</td><td class="num">[0.4, 2]</td><td class="num">5–1–0</td>'
    ) in tournament
    assert (
        "Position bias (share of first-position wins): no <code>tournament_matches.csv</code> to measure it from."
    ) in tournament
    (reports_dir / "tournament_matches.csv").write_text(
        "match_id,round,a,b,order,judgment_id,verdict,winner,match_winner\n"
        "r1m1,1,essay00000000001,essay00000000002,ab,j1,A,essay00000000001,essay00000000001\n"
        "r1m1,1,essay00000000001,essay00000000002,ba,j2,B,essay00000000001,essay00000000001\n"
        "r2m1,2,essay00000000001,essay00000000002,ab,j3,A,essay00000000001,tie\n"
        "r2m1,2,essay00000000001,essay00000000002,ba,j4,A,essay00000000002,tie\n"
    )
    (reports_dir / "tournament.json").write_text(
        json.dumps(
            {
                "essays": 2,
                "rounds_played": 2,
                "judgments": 4,
                "judge": "judge-x",
                "template_id": "pairwise-novelty",
                "stopped_early": "stopped after round 2 of 5: every pair of the 2 essays has already met",
            }
        )
    )
    tournament = _section(build_report(reports_dir, COHORT, gens), "tournament")
    assert (
        "Position bias: the essay shown first won 3 of 4 decisive judgments (75%, 95% interval 30% to 95%); 50% "
        "is a judge without position bias."
    ) in tournament
    assert (
        " ".join(tournament.split()).count(
            "2 essays, 2 Swiss rounds (4 judgments) judged by <code>judge-x</code> with <code>pairwise-novelty</code>; "
            "Bradley-Terry ratings, 0 is a reference essay, higher is better, a disagreement between the two orders "
            "counts as a tie. stopped after round 2 of 5: every pair of the 2 essays has already met."
        )
        == 1
    )
    dedup = _section(html, "dedup")
    assert "3 essays in 2 clusters of near-duplicates" in dedup and "1 cluster holds more than" in dedup
    assert dedup.count('<table class="data cluster"') == 1 and 'data-cluster="c0"' in dedup
    members = dedup[dedup.index('data-cluster="c0"') :]
    assert members.index("essay00000000001") < members.index("essay00000000003")  # the representative first
    assert '<td>★</td><td class="id">essay00000000001</td>' in members


def test_a_plots_label_column_fits_its_longest_label_and_long_labels_are_shortened():
    from daydream_luigi.report.charts import forest

    row = {"title": "t", "point": 1.0, "low": 0.0, "high": 2.0, "note": "n=3"}
    long_name = "Crassulacean acid metabolism (CAM photosynthesis in succulents)"
    plot = forest([{**row, "label": "Ant trails"}, {**row, "label": long_name}], -3, 3, 0)
    assert [r["label_short"] for r in plot["rows"]] == ["Ant trails", long_name[:39] + "\u2026"]
    assert plot["label_w"] == 24 + round(7.6 * 40)
    assert forest([{**row, "label": "Ant trails"}], -3, 3, 0)["label_w"] == 120  # short labels, narrow column


# ---------------------------------------------------------------- decisions (issue 20)


def _plain(html: str) -> str:
    """Text with the tags dropped and whitespace collapsed, for whole-sentence assertions."""
    import re

    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return text.replace(" .", ".").replace(" ,", ",").replace(" )", ")").replace("( ", "(").replace(" :", ":")


def test_the_first_section_says_how_many_essays_pass_each_gate_and_which(store):
    from daydream_luigi.analysis import gates
    from daydream_luigi.core.gates import parse_gate

    reports_dir, gens, frame = store
    text = "criteria:\n  - {template: novelty, min: 7, by: mean}\nmin_judges: 2\n"
    gate = parse_gate(
        "keen",
        Path("config/gates/keen.yaml"),
        text,
        {"criteria": [{"template": NOVELTY, "min": 7, "by": "mean"}], "min_judges": 2},
        [NOVELTY, COHERENCE],
    )
    decisions = gates.decide(frame, gate)  # novelty means: essay 1 8.5, essay 2 4.5, essay 3 5.5
    decisions.to_csv(reports_dir / "gate-keen.csv", index=False)
    (reports_dir / "dossiers").mkdir()
    (reports_dir / "dossiers" / "essay00000000001.json").write_text(
        json.dumps({"gates": {"keen": gates.gate_record("essay00000000001", frame, gate, gates.PASS)}})
    )
    (reports_dir.parent / "manifest.json").write_text(json.dumps({"gates": ["keen", "strict"]}))
    html = build_report(reports_dir, COHORT, gens)
    assert html.index("<section ") == html.index('<section id="decisions">')  # the first section
    section = _section(html, "decisions")
    assert (
        _plain(section).count(
            f"1 of 3 essays pass gate keen criteria: novelty: mean ≥ 7 · 2 judges or more · gate file sha256 "
            f"{gate.sha256[:12]} · gate-keen.csv"
        )
        == 1
    )
    passing = section[section.index('<table class="data passing">') : section.index("</table>")]
    assert passing.count('<tr data-essay="') == 1
    assert (
        '<tr data-essay="essay00000000001"><td class="id">essay00000000001</td><td>Ant trails + Tidal power</td>'
        in passing
    )
    assert '8.5 <small class="muted">[2.15, 14.85]</small>' in passing  # 9 and 8: 8.5 +- t(0.975, 1) * 0.5
    hrefs = parse(section).hrefs
    assert hrefs == [
        "gate-keen.csv",
        "dossiers/essay00000000001.json",
        "../../../gens/essay/essay00000000001/parsed.txt",
    ]
    assert all((reports_dir / unquote(h)).is_file() for h in hrefs)
    reasons = section[section.index('<table class="data reasons">') :]
    assert '<tr><td>novelty: mean 4.50 &lt; 7</td><td class="num">1</td></tr>' in reasons
    assert '<tr><td>novelty: mean 5.50 &lt; 7</td><td class="num">1</td></tr>' in reasons
    assert "Why the other 2 fail (2 reasons)" in section
    # a gate the cohort names whose table is not written yet says so; a gate only `daydream gate` wrote says that
    assert "Gate strict" in section and "Not decided yet: no <code>gate-strict.csv</code>" in section
    (reports_dir.parent / "manifest.json").write_text(json.dumps({}))
    unnamed = _section(build_report(reports_dir, COHORT, gens), "decisions")
    assert "Written by <code>daydream gate keen</code>" in unnamed and "gate strict" not in unnamed.lower()


def test_without_gates_the_first_section_says_how_to_name_one_and_the_neutrality_check_is_shown(store):
    reports_dir, gens, _ = store
    html = build_report(reports_dir, COHORT, gens)
    section = _section(html, "decisions")
    assert "No gate decides this cohort: name one in its spec" in section
    assert "No record of a check: no <code>neutrality.json</code> (a run writes it)." in section
    assert 'id="people"' not in html  # no judge_vs_human.csv
    (reports_dir.parent / "neutrality.json").write_text(
        json.dumps({"checked": False, "rules_file": "/p/config/neutrality.yaml"})
    )
    section = _section(build_report(reports_dir, COHORT, gens), "decisions")
    assert "Not checked: there was no <code>/p/config/neutrality.yaml</code> when the cohort last ran." in section
    record = {
        "checked": True,
        "rules_file": "/p/config/neutrality.yaml",
        "sha256": "ab" * 32,
        "forbidden": ["/day[- ]?dream/"],
        "target": "/p/config/target.txt",
        "max_similarity": 0.5,
        "inputs": [
            {"source": "a.txt", "line": 1, "sha256": "0" * 64, "similarity": 0.21},
            {"source": "b.txt", "line": 1, "sha256": "1" * 64, "similarity": 0.43},
        ],
        "problems": [],
    }
    (reports_dir.parent / "neutrality.json").write_text(json.dumps(record))
    section = _section(build_report(reports_dir, COHORT, gens), "decisions")
    assert (
        "Before the last run, 2 fixed inputs (templates, every description of every concept used, system prompts) "
        "were checked against /p/config/neutrality.yaml (sha256 abababababab): no forbidden term (/day[- ]?dream/); "
        "the closest input to the target /p/config/target.txt is b.txt at cosine similarity 0.430 (limit 0.5). "
        "neutrality.json"
    ) in _plain(section)


def test_people_s_labels_get_a_section_with_the_judges_and_the_gates_measured(store):
    reports_dir, gens, _ = store
    (reports_dir / "judge_vs_human.csv").write_text(
        "judge,template,n,mean_abs_difference,spearman_rho,krippendorff_alpha,true_pass,false_pass,false_fail,"
        "true_fail,precision,recall\n"
        "judge-a,novelty,3,1.25,0.5,0.4166,,,,,,\n"
        "judge-b,novelty,0,,,,,,,,,\n"
        "gate,gate:keen,3,,,,1,0,1,1,1.0,0.5\n"
    )
    html = build_report(reports_dir, COHORT, gens)
    people = _plain(_section(html, "people"))
    assert "judge-a novelty 3 1.25 0.50 0.42" in people
    assert "gate:keen 3 1 0 1 1 1.00 0.50" in people
    assert "1 judge/template or gate row without an essay scored by people." in people
    assert (
        html.index('<section id="decisions">')
        < html.index('<section id="people">')
        < html.index('<section id="overview">')
    )
