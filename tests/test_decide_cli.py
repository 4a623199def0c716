"""Deciding from a cohort run against the loopback test server, with planted scores: `daydream gate` (every essay
decided and explained, dossiers written, updated and withdrawn), `select top --gate`, `daydream compare` and
`daydream labels compare`, through the real CLI."""

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FAKE_KEY, REPO, daydream, write_raw

from daydream_luigi.core.settings import Paths
from daydream_luigi.report.collect import collect_scores

COHORT = "gated"
SPEC = """concepts: [tidal-power, ant-foraging]
k: 2
draft_templates: [ladder, sketch]
essay_templates: [polish, verbatim]
evaluation_templates: [judge-a, judge-b]
generation_models: [gen-paid]
evaluation_models: [judge-paid, judge-two]
"""
JUDGE_TWO = "judge-two,vendor/judge-two,openrouter,Judge two,false,true,paid,3"
STRICT = """criteria:
  - {template: judge-a, min: 7, by: lower-bound}
  - {template: judge-b, min: 6, by: mean}
min_judges: 2
max_judge_range: 3
"""
LENIENT = "criteria:\n  - {template: judge-a, min: 5, by: mean}\nmin_judges: 1\n"
# (draft template, essay template) -> evaluation template -> judge -> the planted score (None: the answer had none)
PLANTED = {
    ("ladder", "polish"): {"judge-a": {"judge-paid": 9, "judge-two": 9}, "judge-b": {"judge-paid": 7, "judge-two": 6}},
    ("ladder", "verbatim"): {
        "judge-a": {"judge-paid": 8, "judge-two": 10},
        "judge-b": {"judge-paid": 7, "judge-two": 7},
    },
    ("sketch", "polish"): {"judge-a": {"judge-paid": 9, "judge-two": 9}, "judge-b": {"judge-paid": 9, "judge-two": 2}},
    ("sketch", "verbatim"): {
        "judge-a": {"judge-paid": 9, "judge-two": None},
        "judge-b": {"judge-paid": 7, "judge-two": 7},
    },
}
T_975_DF1 = 12.7062047  # Student t(0.975, 1), from a printed table


def plant_scores(paths: Paths, planted: dict) -> dict:
    """Overwrite each evaluation's score in its metadata.json; the essays by (draft template, essay template)."""
    frame = collect_scores(paths, COHORT)[0]
    essays = {}
    for row in frame.itertuples():
        key = (row.draft_template, row.generation_template)
        essays[key] = row.parent_gen_id
        score = planted[key][row.evaluation_template][row.evaluation_model]
        path = paths.gens / "evaluation" / row.gen_id / "metadata.json"
        metadata = json.loads(path.read_text())
        metadata.update(score=score, error="" if score is not None else "parser 'in_last_line': no score found")
        path.write_text(json.dumps(metadata))
    return essays


@pytest.fixture(scope="module")
def ran(tmp_path_factory, endpoint):
    """One run of the `gated` cohort (2 drafts, 4 essays, 16 evaluations by 2 judges) with its scores planted."""
    root = tmp_path_factory.mktemp("decide")
    shutil.copytree(REPO / "config", root / "config")
    write_raw(root / "data" / "1_raw")
    models = root / "data" / "1_raw" / "llm_models.csv"
    models.write_text(models.read_text() + JUDGE_TWO + "\n")
    (root / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC)
    (root / "config" / "gates" / "strict.yaml").write_text(STRICT)
    (root / "config" / "gates" / "lenient.yaml").write_text(LENIENT)
    env = {
        "DAYDREAM_DATA_ROOT": str(root / "data"),
        "DAYDREAM_CONFIG_DIR": str(root / "config"),
        "DAYDREAM_LLM_BASE_URL": endpoint.base_url,
        "OPENROUTER_API_KEY": FAKE_KEY,
    }
    before = endpoint.stats["requests"]
    result = daydream("run", "--cohort", COHORT, env=env, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert endpoint.stats["requests"] - before == 2 + 2 + 16  # drafts, polish essays (verbatim copies), evaluations
    return root, plant_scores(Paths(root / "data", root / "config"), PLANTED)


@pytest.fixture
def store(ran, tmp_path, monkeypatch):
    """A copy of the planted store for one test, which the CLI in this process reads."""
    source, essays = ran
    root = tmp_path / "project"
    shutil.copytree(source, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("DAYDREAM_DATA_ROOT", str(root / "data"))
    monkeypatch.setenv("DAYDREAM_CONFIG_DIR", str(root / "config"))
    monkeypatch.delenv("GEN_TEMPLATES_ROOT", raising=False)
    monkeypatch.delenv("LUIGI_CONFIG_PATH", raising=False)
    return root, essays


def cli(*args: str):
    from daydream_luigi.cli import main

    return CliRunner().invoke(main, list(args))


def reports(root: Path) -> Path:
    return root / "data" / "cohorts" / COHORT / "reports"


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_gate_decides_every_essay_with_its_reason_and_writes_a_dossier_for_each_that_passes(store):
    root, essays = store
    e1, e2 = essays["ladder", "polish"], essays["ladder", "verbatim"]
    e3, e4 = essays["sketch", "polish"], essays["sketch", "verbatim"]
    (reports(root) / "tournament_ratings.csv").write_text(
        f"gen_id,rating,ci_low,ci_high,wins,losses,ties\n{e1},1.5,0.5,2.5,3,0,1\n{e2},-1.5,-2.5,-0.5,0,3,1\n"
    )
    (reports(root) / "dedup_clusters.csv").write_text(
        "gen_id,cluster,representative,nearest_similarity,nearest,mean_score\n"
        f"{e1},c1,{e1},0.97,{e3},8.0\n{e3},c1,{e1},0.97,{e1},7.25\n"
    )
    result = cli("gate", "strict", "--cohort", COHORT)
    assert result.exit_code == 0, result.output
    gate_file = root / "config" / "gates" / "strict.yaml"
    sha256 = hashlib.sha256(STRICT.encode()).hexdigest()
    assert result.stdout.splitlines() == [
        f"pass {e1}",
        f"1 of 4 essays pass gate strict ({gate_file}, sha256 {sha256[:12]}) -> {reports(root) / 'gate-strict.csv'}",
        f"dossiers: 1 in {reports(root) / 'dossiers'}",
    ]
    table = {row["gen_id"]: row for row in rows_of(reports(root) / "gate-strict.csv")}
    assert {gen_id: row["decision"] for gen_id, row in table.items()} == {
        e1: "pass",
        e2: "judge-a: lower bound -3.71 < 7",  # 8 and 10: mean 9, sd sqrt(2), n 2: 9 - t(0.975, 1) = -3.71
        e3: "judge-b: judges' means differ by 7.00 > 3",  # 9 and 2
        e4: "judge-a: 1 judge(s), needs 2",  # judge-two's answer had no score
    }
    assert list(table) == sorted(essays.values())
    assert float(table[e2]["judge-a:value"]) == pytest.approx(9 - T_975_DF1, abs=1e-6)
    assert [table[e1][f"judge-a:{c}"] for c in ("value", "ci_low", "ci_high", "n", "judges", "judge_range")] == [
        "9.0",
        "9.0",
        "9.0",
        "2",
        "2",
        "0.0",
    ]
    assert (table[e4]["judge-a:n"], table[e4]["judge-a:judges"]) == ("1", "1")

    assert sorted(p.name for p in (reports(root) / "dossiers").iterdir()) == [f"{e1}.json"]
    dossier = json.loads((reports(root) / "dossiers" / f"{e1}.json").read_text())
    scores = collect_scores(Paths.from_env(), COHORT)[0]
    mine = scores[scores["parent_gen_id"] == e1]
    draft, combo = mine["draft_gen_id"].iloc[0], mine["combo_id"].iloc[0]

    def evaluations(template: str) -> list[dict]:
        rows = mine[mine["evaluation_template"] == template].sort_values("evaluation_model")
        return [
            {
                "gen_id": r.gen_id,
                "judge": r.evaluation_model,
                "replicate": 1,
                "score": PLANTED["ladder", "polish"][template][r.evaluation_model],
                "file": f"gens/evaluation/{r.gen_id}/raw.txt",
            }
            for r in rows.itertuples()
        ]

    half_b = T_975_DF1 * math.sqrt(0.5) / math.sqrt(2)  # judge-b: 7 and 6
    assert dossier == {
        "gen_id": e1,
        "cohort_id": COHORT,
        "combo_id": combo,
        "concepts": [
            {"concept_id": "ant-foraging", "name": "Ant foraging"},
            {"concept_id": "tidal-power", "name": "Tidal power"},
        ],
        "templates": {"draft": "ladder", "essay": "polish"},
        "models": {"generation": "gen-paid"},
        "draft_gen_id": draft,
        "files": {"draft": f"gens/draft/{draft}/parsed.txt", "essay": f"gens/essay/{e1}/parsed.txt"},
        "data_root": str(root / "data"),
        "tournament": {"rating": 1.5, "ci_low": 0.5, "ci_high": 2.5, "wins": 3, "losses": 0, "ties": 1},
        "dedup": {"cluster": "c1", "representative": e1, "nearest_similarity": 0.97, "nearest": e3, "mean_score": 8.0},
        "gates": {
            "strict": {
                "decision": "pass",
                "file": str(gate_file),
                "sha256": sha256,
                "text": STRICT,
                "min_judges": 2,
                "max_judge_range": 3.0,
                "criteria": [
                    {
                        "template": "judge-a",
                        "by": "lower-bound",
                        "min": 7.0,
                        "value": 9.0,
                        "mean": 9.0,
                        "sd": 0.0,
                        "ci_low": 9.0,
                        "ci_high": 9.0,
                        "judge_range": 0.0,
                        "n": 2,
                        "judges": {"judge-paid": {"mean": 9.0, "n": 1}, "judge-two": {"mean": 9.0, "n": 1}},
                        "agreement": "high",
                        "evaluations": evaluations("judge-a"),
                    },
                    {
                        "template": "judge-b",
                        "by": "mean",
                        "min": 6.0,
                        "value": 6.5,
                        "mean": 6.5,
                        "sd": pytest.approx(math.sqrt(0.5)),
                        "ci_low": pytest.approx(6.5 - half_b),
                        "ci_high": pytest.approx(6.5 + half_b),
                        "judge_range": 1.0,
                        "n": 2,
                        "judges": {"judge-paid": {"mean": 7.0, "n": 1}, "judge-two": {"mean": 6.0, "n": 1}},
                        "agreement": "high",
                        "evaluations": evaluations("judge-b"),
                    },
                ],
            }
        },
    }
    for path in (
        *dossier["files"].values(),
        *(e["file"] for c in dossier["gates"]["strict"]["criteria"] for e in c["evaluations"]),
    ):
        assert (root / "data" / path).is_file()


def test_gates_share_a_dossier_and_a_gate_no_longer_met_is_withdrawn_from_it(store):
    root, essays = store
    e1 = essays["ladder", "polish"]
    dossiers = reports(root) / "dossiers"
    assert cli("gate", "strict", "--cohort", COHORT).exit_code == 0
    lenient = cli("gate", "lenient", "--cohort", COHORT)
    assert lenient.stdout.splitlines()[-2:] == [
        f"4 of 4 essays pass gate lenient ({root / 'config' / 'gates' / 'lenient.yaml'}, sha256 "
        f"{hashlib.sha256(LENIENT.encode()).hexdigest()[:12]}) -> {reports(root) / 'gate-lenient.csv'}",
        f"dossiers: 4 in {dossiers}",
    ]
    assert sorted(json.loads((dossiers / f"{e1}.json").read_text())["gates"]) == ["lenient", "strict"]

    plant_scores(
        Paths.from_env(),
        {
            **PLANTED,
            ("ladder", "polish"): {**PLANTED["ladder", "polish"], "judge-b": {"judge-paid": 7, "judge-two": 2}},
        },
    )
    again = cli("gate", "strict", "--cohort", COHORT)
    assert again.stdout.splitlines()[-1] == f"dossiers: 0 in {dossiers}; gate strict withdrawn from 1"
    assert (
        rows_of(reports(root) / "gate-strict.csv")[sorted(essays.values()).index(e1)]["decision"]
        == "judge-b: judges' means differ by 5.00 > 3"
    )
    assert list(json.loads((dossiers / f"{e1}.json").read_text())["gates"]) == ["lenient"]

    (root / "config" / "gates" / "lenient.yaml").write_text(LENIENT.replace("min: 5", "min: 9.5"))
    none = cli("gate", "lenient", "--cohort", COHORT)
    assert none.stdout.splitlines()[-1] == f"dossiers: 0 in {dossiers}; gate lenient withdrawn from 4"
    assert list(dossiers.iterdir()) == []  # a dossier without a gate is deleted


def test_select_top_with_a_gate_keeps_only_the_essays_that_pass_it(store):
    root, essays = store
    out = root / "chosen.txt"
    gated = cli("select", "top", "--templates", "judge-a", "--gate", "strict", "--cohort", COHORT, "--out", str(out))
    assert gated.exit_code == 0, gated.output
    assert out.read_text() == f"{essays['ladder', 'polish']}\n"
    everything = cli("select", "top", "--templates", "judge-a", "--cohort", COHORT, "--out", str(out))
    assert everything.exit_code == 0 and len(out.read_text().split()) == 4


def test_two_essay_templates_are_compared_pairwise_and_the_verdict_says_two_pairs_cannot_tell(store):
    root, _ = store
    result = cli("compare", "--cohort", COHORT, "--by", "essay_template", "polish", "verbatim", "--template", "judge-b")
    assert result.exit_code == 0, result.output
    # units (combination, draft template, model): ladder 6.5 - 7 = -0.5, sketch 5.5 - 7 = -1.5; mean -1, sd sqrt(0.5),
    # half-width t(0.975, 1) * sqrt(0.5) / sqrt(2) = 6.35; sign test: 0 of 2 above, p = 2 * 1/4
    files = (
        reports(root) / "compare-essay_template-polish-verbatim.csv",
        reports(root) / "compare-essay_template-polish-verbatim-units.csv",
    )
    assert result.stdout.splitlines() == [
        "judge-b: too few pairs to tell (2 < 6): polish - verbatim = -1.00, 95% CI [-7.35, +5.35], n=2, sign test p=0.5",
        f"tables: {files[0]}, {files[1]}",
    ]
    summary = rows_of(files[0])
    assert [(r["evaluation_template"], r["n"], r["mean_difference"], r["only_a"], r["only_b"]) for r in summary] == [
        ("judge-b", "2", "-1.0", "0", "0")
    ]
    assert [(r["score_a"], r["score_b"]) for r in rows_of(files[1])] == [("6.5", "7.0"), ("5.5", "7.0")]
    every = cli("compare", "--cohort", COHORT, "--by", "essay_template", "polish", "verbatim")
    assert every.stdout.splitlines()[0] == (
        "judge-a: too few pairs to tell (2 < 6): polish - verbatim = +0.00, 95% CI [+0.00, +0.00], n=2, no sign test "
        "(every pair tied)"
    )
    unknown = cli("compare", "--cohort", COHORT, "--by", "judge", "judge-paid", "nobody")
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "error: cohort gated: judge 'nobody' has no score in this cohort; present: judge-paid, judge-two\n"
    )


def test_peoples_labels_measure_the_judges_and_the_gate(store):
    root, essays = store
    e1, e2 = essays["ladder", "polish"], essays["ladder", "verbatim"]
    e3, e4 = essays["sketch", "polish"], essays["sketch", "verbatim"]
    people = root / "people.csv"
    people.write_text(
        "gen_id,template,score,rater\n"
        f"{e1},judge-a,8,ana\n{e2},judge-a,6,ana\n{e3},judge-a,9,ana\n{e4},judge-a,3,ana\n"
        f"{e1},gate:strict,10,ana\n{e2},gate:strict,10,ana\n{e3},gate:strict,0,ana\n"
    )
    assert cli("labels", "import", str(people)).exit_code == 0
    result = cli("labels", "compare", "--cohort", COHORT)
    assert result.exit_code == 0, result.output
    path = reports(root) / "judge_vs_human.csv"
    assert result.stdout == f"3 of 5 judge/template and gate rows have essays scored by people -> {path}\n"
    rows = {(r["judge"], r["template"]): r for r in rows_of(path)}
    assert list(rows) == [
        ("judge-paid", "judge-a"),
        ("judge-paid", "judge-b"),
        ("judge-two", "judge-a"),
        ("judge-two", "judge-b"),
        ("gate", "gate:strict"),
    ]
    paid = rows["judge-paid", "judge-a"]
    # judge-paid 9, 8, 9, 9 against ana's 8, 6, 9, 3: |1| + |2| + |0| + |6| over 4
    assert (paid["n"], float(paid["mean_abs_difference"])) == ("4", 2.25)
    # ranks (3, 1, 3, 3) against (3, 2, 4, 1): covariance sum 1, squares 3 and 5: rho = 1 / sqrt(15)
    assert float(paid["spearman_rho"]) == pytest.approx(1 / math.sqrt(15))
    assert rows["judge-two", "judge-a"]["n"] == "3"  # judge-two's answer on e4 had no score
    assert rows["judge-paid", "judge-b"]["n"] == "0"
    gate = rows["gate", "gate:strict"]
    # e1: both pass; e2: people pass what the gate fails; e3: both fail; e4: no verdict from people
    assert [gate[c] for c in ("n", "true_pass", "false_pass", "false_fail", "true_fail", "precision", "recall")] == [
        "3",
        "1",
        "0",
        "1",
        "1",
        "1.0",
        "0.5",
    ]


def test_a_cohort_that_names_gates_ends_its_run_with_their_decisions_dossiers_and_judges_against_people(
    store, endpoint, monkeypatch
):
    root, essays = store
    monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", FAKE_KEY)
    e1, e2 = essays["ladder", "polish"], essays["ladder", "verbatim"]
    e3, e4 = essays["sketch", "polish"], essays["sketch", "verbatim"]
    (root / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC + "gates: [strict, lenient]\n")
    people = root / "people.csv"
    people.write_text(f"gen_id,template,score,rater\n{e1},judge-a,8,ana\n{e1},gate:strict,10,ana\n")
    assert cli("labels", "import", str(people)).exit_code == 0
    before = endpoint.stats["requests"]
    result = daydream("run", "--cohort", COHORT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert endpoint.stats["requests"] == before  # every generation was complete: the reports alone were rebuilt
    manifest = json.loads((root / "data" / "cohorts" / COHORT / "manifest.json").read_text())
    assert manifest["gates"] == ["strict", "lenient"]
    strict = rows_of(reports(root) / "gate-strict.csv")
    assert {row["gen_id"]: row["decision"] for row in strict} == {
        e1: "pass",
        e2: "judge-a: lower bound -3.71 < 7",
        e3: "judge-b: judges' means differ by 7.00 > 3",
        e4: "judge-a: 1 judge(s), needs 2",
    }
    assert [row["decision"] for row in rows_of(reports(root) / "gate-lenient.csv")] == ["pass"] * 4
    dossiers = reports(root) / "dossiers"
    assert sorted(p.stem for p in dossiers.iterdir()) == sorted(essays.values())
    assert sorted(json.loads((dossiers / f"{e1}.json").read_text())["gates"]) == ["lenient", "strict"]
    assert list(json.loads((dossiers / f"{e2}.json").read_text())["gates"]) == ["lenient"]
    vs_human = {(r["judge"], r["template"]): r for r in rows_of(reports(root) / "judge_vs_human.csv")}
    assert (vs_human["judge-paid", "judge-a"]["n"], vs_human["judge-paid", "judge-a"]["mean_abs_difference"]) == (
        "1",
        "1.0",
    )  # judge-paid gave e1 9, ana 8
    assert [vs_human["gate", "gate:strict"][c] for c in ("n", "true_pass", "precision", "recall")] == [
        "1",
        "1",
        "1.0",
        "1.0",
    ]
    assert ("gate", "gate:lenient") in vs_human
    page = (reports(root) / "report.html").read_text()
    first = page[page.index("<section ") : page.index("</section>")]
    assert first.startswith('<section id="decisions">')
    assert first.index("<strong>1 of 4 essays pass gate strict</strong>") < first.index(
        "<strong>4 of 4 essays pass gate lenient</strong>"
    )
    assert first.count('<table class="data passing">') == 2
    assert first.count(f'<tr data-essay="{e1}">') == 3  # passes both, and strict lists why the other three fail
    assert f"were checked against <code>{root / 'config' / 'neutrality.yaml'}</code>" in " ".join(first.split())
    assert '<section id="people">' in page

    # what the run decided is what `daydream gate` decides
    decided = (reports(root) / "gate-strict.csv").read_bytes()
    (reports(root) / "gate-strict.csv").unlink()
    assert cli("gate", "strict", "--cohort", COHORT).exit_code == 0
    assert (reports(root) / "gate-strict.csv").read_bytes() == decided

    # a gate tightened after the run: the next run re-decides (the page's fingerprint covers the gate files it
    # decides by), still without a call
    (root / "config" / "gates" / "lenient.yaml").write_text(LENIENT.replace("min: 5", "min: 9.5"))
    again = daydream("run", "--cohort", COHORT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert endpoint.stats["requests"] == before
    assert all(row["decision"].startswith("judge-a: mean ") for row in rows_of(reports(root) / "gate-lenient.csv"))
    assert sorted(p.stem for p in dossiers.iterdir()) == [e1]
    assert "<strong>0 of 4 essays pass gate lenient</strong>" in (reports(root) / "report.html").read_text()
    assert list(json.loads((dossiers / f"{e1}.json").read_text())["gates"]) == ["strict"]


def test_daydream_report_decides_by_the_gates_the_spec_names_now(store):
    root, essays = store
    (root / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC + "gates: [strict]\n")
    assert not (reports(root) / "gate-strict.csv").exists()
    result = cli("report", "--cohort", COHORT, "--backend", "http")
    assert result.exit_code == 0, result.output
    assert [row["decision"] for row in rows_of(reports(root) / "gate-strict.csv")][
        sorted(essays.values()).index(essays["ladder", "polish"])
    ] == "pass"
    assert not (reports(root) / "judge_vs_human.csv").exists()  # nobody labelled an essay of the cohort


@pytest.mark.parametrize(
    "gates, gate_file, problems",
    [
        (
            "[strict, nothing]",
            None,
            [
                "{spec}: gates lists 'nothing', which has no gate file {gates}/nothing.yaml; write it (like "
                "config/gates/reinvention.yaml) or name one of: lenient, reinvention, strict"
            ],
        ),
        (
            "[../strict]",
            None,
            ["{spec}: gates lists '../strict', which may only contain letters, digits, '.', '_' and '-'"],
        ),
        ("strict", None, ["{spec}: gates must be a list of ids"]),
        (
            "[reinvention]",
            None,
            [
                "{gates}/reinvention.yaml: criterion 1: template 'novelty-judge' is not an evaluation template; use one "
                "of: judge-a, judge-b",
                "{gates}/reinvention.yaml: criterion 2: template 'coherence-judge' is not an evaluation template; use "
                "one of: judge-a, judge-b",
            ],
        ),
        (
            "[narrow]",
            "criteria:\n  - {template: judge-a, min: 11, by: mean}\nmin_judges: 1\n",
            ["{gates}/narrow.yaml: criterion 1: min must be a number from 0 to 10 (found 11)"],
        ),
    ],
)
def test_a_gate_the_spec_names_is_checked_before_anything_runs(project, endpoint, gates, gate_file, problems):
    spec = project / "config" / "cohorts" / "named.yaml"
    spec.write_text(f"concepts: [tidal-power, ant-foraging]\nk: 2\ngates: {gates}\n")
    for name, text in (("strict", STRICT), ("lenient", LENIENT), ("narrow", gate_file)):
        if text is not None:
            (project / "config" / "gates" / f"{name}.yaml").write_text(text)
    for command in (("plan",), ("run",)):
        result = cli(*command, "--cohort", "named", "--backend", "http")
        assert result.exit_code == 2, result.output
        gates_dir = project / "config" / "gates"
        assert result.stderr == "".join(f"error: {p.format(spec=spec, gates=gates_dir)}\n" for p in problems)
    assert endpoint.stats["requests"] == 0
    assert not (project / "data" / "cohorts").exists()


def test_a_gate_needs_the_evaluation_templates_its_criteria_read(project):
    spec = project / "config" / "cohorts" / "named.yaml"
    spec.write_text("concepts: [tidal-power, ant-foraging]\nk: 2\nevaluation_templates: [judge-b]\ngates: [strict]\n")
    (project / "config" / "gates" / "strict.yaml").write_text(STRICT)
    result = cli("plan", "--cohort", "named", "--backend", "http")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {spec}: gate strict ({project / 'config' / 'gates' / 'strict.yaml'}) needs evaluation template "
        f"'judge-a', which this cohort does not evaluate with; add it to evaluation_templates, or remove the gate\n"
    )
