"""People's scores: labels imported and added (validated, idempotent, never overwritten), and the judge-vs-human table
on a case worked out by hand."""

import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from daydream_luigi.analysis.human import JUDGE_VS_HUMAN_COLUMNS, judge_vs_human
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS
from daydream_luigi.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def essays(project) -> list[str]:
    """Three essays in the store (imported: no model call), and a gate file to give verdicts on."""
    files = [write(project / f"essay{i}.txt", f"Essay number {i} says something about tides.\n") for i in range(3)]
    result = cli("import", "--stage", "essay", *map(str, files))
    assert result.exit_code == 0, result.output
    (project / "config" / "gates" / "strict.yaml").write_text(
        "criteria:\n  - {template: judge-a, min: 7, by: mean}\nmin_judges: 1\n"
    )
    return result.stdout.split()


def stored(project: Path) -> Path:
    return project / "data" / "labels" / "labels.csv"


def test_labels_are_imported_once_and_importing_them_again_writes_nothing(project, essays):
    e0, e1, e2 = essays
    rows = f'gen_id,template,score,rater,note\n{e0},judge-a,7,ana,"clear, but thin"\n{e1},judge-a,4.5,ana,\n'
    rows += f'{e0},gate:strict,10,bo,\n{e0},judge-a,7,ana,"clear, but thin"\n'  # the last row repeats the first
    first = cli("labels", "import", str(write(project / "people.csv", rows)))
    assert first.exit_code == 0, first.output
    assert first.stdout == f"3 label(s) added, 1 already stored (unchanged) -> {stored(project)}\n"
    assert stored(project).read_text() == (
        f'gen_id,template,score,rater,note\n{e0},judge-a,7,ana,"clear, but thin"\n{e1},judge-a,4.5,ana,\n'
        f"{e0},gate:strict,10,bo,\n"
    )
    before = (stored(project).read_bytes(), stored(project).stat().st_mtime_ns, stored(project).stat().st_ino)
    again = cli("labels", "import", str(project / "people.csv"))
    assert (
        again.exit_code == 0
        and again.stdout == f"0 label(s) added, 4 already stored (unchanged) -> {stored(project)}\n"
    )
    assert (stored(project).read_bytes(), stored(project).stat().st_mtime_ns, stored(project).stat().st_ino) == before

    added = cli("labels", "add", e2, "--template", "judge-b", "--score", "8", "--rater", "cy")
    assert added.exit_code == 0 and added.stdout.startswith("1 label(s) added, 0 already stored")
    assert stored(project).read_text().endswith(f"{e0},gate:strict,10,bo,\n{e2},judge-b,8,cy,\n")


def test_a_different_score_for_a_stored_label_is_an_error_and_nothing_is_written(project, essays):
    e0, e1, _ = essays
    assert cli("labels", "add", e0, "--template", "judge-a", "--score", "7", "--rater", "ana").exit_code == 0
    before = stored(project).read_bytes()
    rows = f"gen_id,template,score,rater\n{e1},judge-a,5,ana\n{e0},judge-a,6,ana\n"
    result = cli("labels", "import", str(write(project / "people.csv", rows)))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        f"error: {project / 'people.csv'}: line 3: essay {e0} on judge-a by ana already has score 7 in "
        f"{stored(project)}: line 2; a label is never replaced: delete that row by hand first if score 6 is right\n"
    )
    assert stored(project).read_bytes() == before  # not even the new row of e1
    twice = f"gen_id,template,score,rater\n{e1},judge-b,5,bo\n{e1},judge-b,3,bo\n"
    result = cli("labels", "import", str(write(project / "twice.csv", twice)))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {project / 'twice.csv'}: line 3: essay {e1} on judge-b by bo already has score 5 in "
        f"{project / 'twice.csv'}: line 2; a label is never replaced: delete that row by hand first if score 3 is "
        f"right\n"
    )
    assert stored(project).read_bytes() == before


def test_every_bad_row_is_one_line_naming_file_line_and_fix_and_nothing_is_written(project, essays):
    e0 = essays[0]
    rows = (
        "gen_id,template,score,rater\n"
        f"{e0},judge-a,eleven,ana\n"
        f"{e0},judge-z,5,ana\n"
        f"nosuchessay,judge-a,5,ana\n"
        f"{e0},gate:strict,7,ana\n"
        f"{e0},gate:loose,10,ana\n"
        f"{e0},judge-b,5,ana smith\n"
    )
    path = write(project / "people.csv", rows)
    result = cli("labels", "import", str(path))
    assert result.exit_code == 2
    gens = project / "data" / "gens" / "essay"
    assert result.stderr.splitlines() == [
        f"error: {path}: line 2: score 'eleven' is not a number from 0 to 10; write the person's score on the "
        f"judges' 0-10 scale",
        f"error: {path}: line 3: template 'judge-z' is not an evaluation template; use one of: judge-a, judge-b, or "
        f"gate:<gate name> for a pass/fail verdict",
        f"error: {path}: line 4: gen_id 'nosuchessay' is not an essay of the store ({gens}); use an essay's gen_id "
        f"(reports/pivot.csv lists them as parent_gen_id)",
        f"error: {path}: line 5: score '7' is not a gate verdict; write 10 for pass or 0 for fail",
        f"error: {path}: line 6: template 'gate:loose' names no gate file in config/gates; check the gate name",
        f"error: {path}: line 7: rater 'ana smith' may only contain letters, digits, '.', '_' and '-'; name the "
        f"person with an id like 'ana' or 'rater_2'",
    ]
    assert not stored(project).exists()
    missing = cli("labels", "import", str(write(project / "short.csv", "gen_id,template,score\n")))
    assert missing.exit_code == 2
    assert missing.stderr == (
        f"error: {project / 'short.csv'}: missing column(s) rater; the header must contain gen_id,template,score,"
        f"rater\n"
    )


# ------------------------------------------------------------------------------------------- judges vs people


def scores(rows: list[tuple]) -> pd.DataFrame:
    """(essay, template, judge, replicate, score) -> a parsed-scores table."""
    frame = pd.DataFrame(
        [
            {
                "gen_id": f"{e}-{t}-{j}-{r}",
                "parent_gen_id": e,
                "evaluation_template": t,
                "evaluation_model": j,
                "evaluation_replicate": r,
                "score": s,
            }
            for e, t, j, r, s in rows
        ]
    )
    return frame.reindex(columns=PARSED_SCORES_COLUMNS)


def test_each_judge_is_measured_against_the_peoples_mean_and_a_gate_against_their_verdicts():
    table = scores(
        [
            ("e1", "t1", "j1", 1, 8),
            ("e1", "t1", "j1", 2, 6),  # j1's e1 is the mean of its replicates: 7
            ("e2", "t1", "j1", 1, 5),
            ("e3", "t1", "j1", 1, 9),
            ("e4", "t1", "j1", 1, 2),  # no person scored e4
            ("e1", "t1", "j2", 1, 7),
            ("e2", "t1", "j2", 1, 4),
            ("e3", "t1", "j2", 1, 6),
            ("e1", "t2", "j1", 1, 3),  # no person used t2
        ]
    )
    labels = pd.DataFrame(
        [
            ("e1", "t1", 6, "ana"),
            ("e1", "t1", 8, "bo"),  # the people's e1: 7
            ("e2", "t1", 4, "ana"),
            ("e3", "t1", 6, "ana"),
            ("e5", "t1", 9, "ana"),  # no judge scored e5
            ("e1", "gate:g", 10, "ana"),  # pass
            ("e2", "gate:g", 0, "ana"),  # fail
            ("e3", "gate:g", 10, "ana"),
            ("e3", "gate:g", 0, "bo"),  # a tie: no verdict
            ("e4", "gate:g", 0, "ana"),
            ("e4", "gate:g", 0, "bo"),
            ("e4", "gate:g", 10, "cy"),  # two of three say fail
        ],
        columns=["gen_id", "template", "score", "rater"],
    )
    decisions = pd.DataFrame({"gen_id": ["e1", "e2", "e3", "e4", "e5"], "decision": ["pass", "pass", "x", "x", "pass"]})
    out = judge_vs_human(table, labels, {"g": decisions})
    assert list(out.columns) == JUDGE_VS_HUMAN_COLUMNS
    rows = {(r["judge"], r["template"]): r for r in out.to_dict("records")}
    assert list(rows) == [("j1", "t1"), ("j1", "t2"), ("j2", "t1"), ("gate", "gate:g")]
    j1 = rows["j1", "t1"]
    # j1 7, 5, 9 against the people's 7, 4, 6: |0| + |1| + |3| over 3 essays
    assert (j1["n"], j1["mean_abs_difference"]) == (3, pytest.approx(4 / 3))
    # ranks 2, 1, 3 against 3, 1, 2: d = -1, 0, 1, rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5
    assert j1["spearman_rho"] == pytest.approx(0.5)
    # units (7, 7), (5, 4), (9, 6): D_o = (0 + 2 + 18) / 6, D_e = 2 * 15.333 / 5, alpha = 1 - 25/46 = 21/46
    assert j1["krippendorff_alpha"] == pytest.approx(21 / 46)
    j2 = rows["j2", "t1"]
    assert (j2["n"], j2["mean_abs_difference"], j2["spearman_rho"], j2["krippendorff_alpha"]) == (3, 0.0, 1.0, 1.0)
    unlabelled = rows["j1", "t2"]
    assert (
        unlabelled["n"] == 0
        and math.isnan(unlabelled["mean_abs_difference"])
        and math.isnan(unlabelled["spearman_rho"])
    )
    gate = rows["gate", "gate:g"]
    # e1: both pass; e2: the gate passes what people fail; e3: tie, left out; e4: both fail; e5: no person's verdict
    assert (gate["n"], gate["true_pass"], gate["false_pass"], gate["false_fail"], gate["true_fail"]) == (3, 1, 1, 0, 1)
    assert (gate["precision"], gate["recall"]) == (0.5, 1.0)
    assert pd.isna(j1["precision"]) and pd.isna(gate["mean_abs_difference"])
