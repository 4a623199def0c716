"""Judging work from outside: texts imported from files are complete generations, judged, reported, checked and
removed beside generated ones."""

import csv
import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import daydream, members_of

from daydream_luigi.cli import main
from daydream_luigi.core import schedule
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.store import operations
from daydream_luigi.store.operations import Finding

ESSAY = "Tidal clocks\r\nThe sea keeps better time than we do.\r\n"  # written on Windows, with a byte-order mark
OTHER = "A reference essay about ants and their trails.\n"
DRAFT = "- tides and ants\n- both follow gradients\n- neither plans ahead\n"
SMALL = (
    "concepts: [tidal-power, ant-foraging]\nk: 2\ndraft_templates: [ladder]\nessay_templates: [polish]\n"
    "generation_models: [gen-paid]\nevaluation_templates: [judge-a]\nevaluation_models: [judge-paid]\n"
)


def cli(*args: str):
    """The real CLI in this process (the project fixture points it at the test folders)."""
    return CliRunner().invoke(main, list(args))


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def files_under(root: Path) -> dict:
    """Every file under `root` (but the raw inputs) with its bytes, mtime and inode: a rewrite changes the inode."""
    return {
        p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "1_raw" not in p.parts
    }


def imported(*args: str) -> list[str]:
    result = cli("import", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def chat_prompts(endpoint) -> list[str]:
    return [r["body"]["messages"][-1]["content"] for r in endpoint.requests if r["path"].endswith("/chat/completions")]


def check_clean(project: Path) -> None:
    result = daydream("check")
    assert (result.returncode, result.stdout) == (0, "0 problem(s) found\n"), result.stdout


# ------------------------------------------------------------------------------------------------------ importing


def test_the_same_text_imported_again_is_the_same_generation_and_nothing_is_rewritten(project):
    write(project / "winner.txt", ESSAY, bom=True)
    write(project / "copy.txt", ESSAY.replace("\r\n", "\n"))  # the same text, saved on Linux
    first = cli("import", "--stage", "essay", "winner.txt", "--label", "winner of project X")
    assert first.exit_code == 0, first.output
    gen_id = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{16}", gen_id)
    assert first.stderr == f"imported essay {gen_id} <- winner.txt\n"
    folder = project / "data" / "gens" / "essay" / gen_id
    before = files_under(project / "data")
    assert sorted(str(p) for p in before) == [
        f"gens/essay/{gen_id}/{name}" for name in ("metadata.json", "parsed.txt", "raw.txt")
    ]
    text = "Tidal clocks\nThe sea keeps better time than we do.\n"
    assert (folder / "raw.txt").read_bytes() == (folder / "parsed.txt").read_bytes() == text.encode()
    meta = json.loads((folder / "metadata.json").read_text())
    datetime.fromisoformat(meta.pop("imported_at"))
    assert meta == {
        "stage": "essay",
        "gen_id": gen_id,
        "parent_gen_id": "",
        "cohort_id": "",
        "combo_id": "",
        "template_id": "",
        "template_sha256": None,
        "llm_model_id": "",
        "replicate": 1,
        "model": None,
        "prompt_sha256": None,
        "task_id": gen_id,
        "imported": True,
        "source_file": "winner.txt",
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "label": "winner of project X",
    }

    again = cli("import", "--stage", "essay", "copy.txt", "--label", "another label")
    assert again.exit_code == 0, again.output
    assert again.stdout == f"{gen_id}\n"
    assert again.stderr == f"already imported (nothing written): essay {gen_id} <- copy.txt\n"
    assert files_under(project / "data") == before  # same bytes, same mtimes, same files (no rename over them)

    as_draft = imported("--stage", "draft", "winner.txt")
    assert as_draft != [gen_id] and (project / "data" / "gens" / "draft" / as_draft[0] / "metadata.json").exists()


def setup(*files):
    """Write (relative path, text or bytes) pairs into the project."""

    def apply(root: Path):
        for relative, content in files:
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    return apply


def limit_prompt_chars(root: Path) -> None:
    path = root / "config" / "daydream.yaml"
    assert "max_prompt_chars: 50000" in path.read_text()
    path.write_text(path.read_text().replace("max_prompt_chars: 50000", "max_prompt_chars: 20"))


CASES = [  # id, setup, arguments after `import --stage essay`, the error lines
    ("missing-file", setup(), ["gone.txt"], ["gone.txt: no such file; check the path"]),
    (
        "empty-file",
        setup(("empty.txt", "")),
        ["empty.txt"],
        ["empty.txt: empty (or only whitespace); there is no text to import"],
    ),
    (
        "whitespace-only",
        setup(("blank.txt", " \n\t\r\n")),
        ["blank.txt"],
        ["blank.txt: empty (or only whitespace); there is no text to import"],
    ),
    (
        "not-utf8",
        setup(("latin.txt", "Caf\xe9 au lait\n".encode("latin-1"))),
        ["latin.txt"],
        ["latin.txt: not UTF-8 text (invalid continuation byte); save it as UTF-8"],
    ),
    ("a-directory", setup(("texts/a.txt", OTHER)), ["texts"], ["texts: is a directory; give the text files in it"]),
    (
        "same-text-twice",
        setup(("a.txt", OTHER), ("b.txt", OTHER)),
        ["a.txt", "b.txt"],
        ["b.txt: the same text as a.txt; import each text once"],
    ),
    (
        "same-file-twice",
        setup(("a.txt", OTHER)),
        ["a.txt", "a.txt"],
        ["a.txt: given more than once; list each file once"],
    ),
    (
        "too-long",
        lambda root: (setup(("a.txt", OTHER))(root), limit_prompt_chars(root)),
        ["a.txt"],
        [
            "a.txt: 47 characters, more than limits.max_prompt_chars=20 in config/daydream.yaml, so no prompt could hold "
            "it; shorten the text or raise the limit"
        ],
    ),
    (
        "blank-label",
        setup(("a.txt", OTHER)),
        ["a.txt", "--label", "  "],
        ["--label is empty; give a short note (e.g. --label 'winner of project X') or leave it out"],
    ),
    (
        "unknown-cohort",
        setup(("a.txt", OTHER)),
        ["a.txt", "--cohort", "judged"],
        [
            "unknown cohort 'judged': {root}/config/cohorts/judged.yaml does not exist; known cohorts: smoke (or build a "
            "curated one with `daydream cohort build judged --from-essays FILE`)"
        ],
    ),
    (
        "not-curated",
        setup(("a.txt", OTHER), ("config/cohorts/grid.yaml", SMALL)),
        ["a.txt", "--cohort", "grid"],
        [
            "{root}/config/cohorts/grid.yaml: cohort grid is not curated (it lists no essays or drafts): it makes its "
            "essays from its axes, so imported ones cannot join it; give a curated cohort, or build one with "
            "`daydream cohort build NAME --from-essays FILE`"
        ],
    ),
    (
        "only-recorded",
        setup(("a.txt", OTHER), ("data/cohorts/old/manifest.json", "{}")),
        ["a.txt", "--cohort", "old"],
        [
            "cohort 'old' is recorded in {root}/data/cohorts/old but has no spec file {root}/config/cohorts/old.yaml to "
            "add to; build a curated cohort with `daydream cohort build NAME --from-essays FILE`"
        ],
    ),
    (
        "broken-curated-spec",
        setup(("a.txt", OTHER), ("config/cohorts/judged.yaml", "essays: [e1]\nevaluation_models: [gpt-9]\n")),
        ["a.txt", "--cohort", "judged"],
        [
            "{root}/config/cohorts/judged.yaml: evaluation_models lists unknown id 'gpt-9'; known: free-one, gen-paid, "
            "judge-paid, qwen-local"
        ],
    ),
    (
        "bad-cohort-name",
        setup(("a.txt", OTHER)),
        ["a.txt", "--cohort", "../x"],
        [
            "cohort name '../x' may only contain letters, digits, '.', '_' and '-'; rename it to something like 'my-id_1'"
        ],
    ),
    (
        "every-problem-at-once",
        setup(("a.txt", OTHER), ("b.txt", OTHER), ("empty.txt", "")),
        ["a.txt", "empty.txt", "b.txt", "gone.txt", "--cohort", "judged", "--label", ""],
        [
            "--label is empty; give a short note (e.g. --label 'winner of project X') or leave it out",
            "empty.txt: empty (or only whitespace); there is no text to import",
            "b.txt: the same text as a.txt; import each text once",
            "gone.txt: no such file; check the path",
            "unknown cohort 'judged': {root}/config/cohorts/judged.yaml does not exist; known cohorts: smoke (or build a "
            "curated one with `daydream cohort build judged --from-essays FILE`)",
        ],
    ),
]


@pytest.mark.parametrize("change,args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_message_per_problem_exit_2_and_nothing_written(project, change, args, expected):
    change(project)
    before = {name: files_under(project / name) for name in ("data", "config")}
    result = cli("import", "--stage", "essay", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.splitlines() == ["error: " + line.format(root=project) for line in expected]
    assert {name: files_under(project / name) for name in ("data", "config")} == before
    assert not (project / "data" / "gens").exists()


# ------------------------------------------------------------------------------------------- judged beside ours


def test_imported_and_generated_essays_are_judged_reported_selected_checked_and_removed_alike(project, endpoint):
    write(project / "config" / "cohorts" / "small.yaml", SMALL)
    assert daydream("run", "--cohort", "small").returncode == 0
    assert endpoint.stats["requests"] == 3  # draft, essay, judge-a
    generated = next(m.gen_id for m in members_of("small") if m.stage == "essay")
    gens = project / "data" / "gens"
    write(project / "ref1.txt", ESSAY, bom=True)
    write(project / "ref2.txt", OTHER)
    (project / "ours.txt").write_bytes((gens / "essay" / generated / "parsed.txt").read_bytes())
    outside = imported("--stage", "essay", "ref1.txt", "ref2.txt", "--label", "reference")
    ours_again = imported("--stage", "essay", "ours.txt")  # our own essay's text: imported, it is another generation
    assert ours_again != [generated]
    listing = write(project / "mixed.txt", "\n".join([generated, *outside, *ours_again]) + "\n")

    built = daydream(
        "cohort",
        "build",
        "mixed",
        "--from-essays",
        str(listing),
        "--eval-templates",
        "judge-a,judge-b",
        "--eval-models",
        "judge-paid",
    )
    assert built.returncode == 0, built.stderr
    assert "cohort mixed: 4 essays, 8 evaluations" in built.stdout
    run = daydream("run", "--cohort", "mixed")
    assert run.returncode == 0, run.stdout + run.stderr
    # one call per new evaluation: judge-b of our essay, both templates of the three imported ones
    assert endpoint.stats["requests"] == 3 + 1 + 3 * 2
    assert "cohort mixed: done 7, skipped (already complete) 6, failed 0, blocked 0, not started 0" in run.stdout
    for text in ("Tidal clocks\nThe sea keeps better time than we do.\n", OTHER):
        assert sum(text in prompt for prompt in chat_prompts(endpoint)) == 2  # each judge template saw the text

    reports = project / "data" / "cohorts" / "mixed" / "reports"
    rows = read_csv(reports / "parsed_scores.csv")
    assert sorted((r["parent_gen_id"], r["evaluation_template"]) for r in rows) == sorted(
        (essay, template) for essay in [generated, *outside, *ours_again] for template in ("judge-a", "judge-b")
    )
    lineage = ("combo_id", "draft_gen_id", "draft_template", "generation_template", "generation_model", "draft_path")
    for row in rows:
        assert row["score"] != "" and row["essay_path"] == str(gens / "essay" / row["parent_gen_id"] / "parsed.txt")
        if row["parent_gen_id"] == generated:
            assert all(row[column] for column in lineage)
        else:
            assert [row[column] for column in lineage] == [""] * len(lineage)
    assert sorted(r["parent_gen_id"] for r in read_csv(reports / "pivot.csv")) == sorted(
        [generated, *outside, *ours_again]
    )
    html = (reports / "report.html").read_text()
    marked = dict(re.findall(r'<tr data-essay="([0-9a-z]{16})" data-origin="([^"]*)">', html))
    assert marked == {
        outside[0]: "imported: reference",
        outside[1]: "imported: reference",
        ours_again[0]: "imported: ours.txt",
    }
    assert f'<tr data-essay="{generated}">' in html
    assert re.search(
        r'data-stat="imported">\s*<div class="stat-label">Imported</div>\s*<div class="stat-value">3</div>'
        r'\s*<div class="stat-note">3 essays, 0 drafts written elsewhere</div>',
        html,
    )
    check_clean(project)

    chosen = daydream(
        "select",
        "top",
        "--templates",
        "judge-a",
        "--cohort",
        "mixed",
        "--top-n",
        "4",
        "--out",
        str(project / "top.txt"),
    )
    assert chosen.returncode == 0, chosen.stderr
    assert sorted((project / "top.txt").read_text().split()) == sorted([generated, *outside, *ours_again])

    evaluations = sorted(m.gen_id for m in members_of("mixed") if m.parent_gen_id == outside[0])
    listed = daydream("gens", "rm", outside[0], "--yes")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"removing essay {outside[0]}",
        *(f"removing evaluation {e}" for e in evaluations),
        "removed 3 generation(s)",
    ]
    assert not (gens / "essay" / outside[0]).exists()
    assert all(not (gens / "evaluation" / e).exists() for e in evaluations)
    assert (gens / "essay" / outside[1] / "metadata.json").exists()
    check_clean(project)
    gone = daydream("run", "--cohort", "mixed")
    assert gone.returncode == 2
    assert gone.stderr.strip() == (
        f"error: {project}/config/cohorts/mixed.yaml: essay {outside[0]} has no complete generation at "
        f"{gens}/essay/{outside[0]}; remove it from the list, run its cohort first, or import its text again"
    )
    assert imported("--stage", "essay", "ref1.txt") == outside[:1]
    assert daydream("run", "--cohort", "mixed").returncode == 0
    assert endpoint.stats["requests"] == 3 + 7 + 2  # only its two evaluations again


def test_imported_drafts_get_essays_from_the_essay_axes_of_a_curated_cohort(project, endpoint):
    write(project / "reference.txt", OTHER)
    write(project / "outline.txt", DRAFT)
    essay = imported("--stage", "essay", "reference.txt")
    listing = write(project / "ids.txt", essay[0] + "\n")
    assert (
        daydream(
            "cohort",
            "build",
            "judged",
            "--from-essays",
            str(listing),
            "--eval-templates",
            "judge-a",
            "--eval-models",
            "judge-paid",
        ).returncode
        == 0
    )
    spec_path = project / "config" / "cohorts" / "judged.yaml"
    added = cli("import", "--stage", "draft", "outline.txt", "--cohort", "judged", "--label", "outline")
    assert added.exit_code == 0, added.output
    draft = added.stdout.strip()
    assert added.stderr.splitlines()[-1] == (
        f"cohort judged: added 1 draft(s) to {spec_path}; run it with `daydream run --cohort judged`"
    )
    spec_text = spec_path.read_text()
    assert spec_text.startswith(f"# Curated cohort built by `daydream cohort build` from {listing}\n")
    assert yaml.safe_load(spec_text) == {
        "essays": essay,
        "evaluation_templates": ["judge-a"],
        "evaluation_models": ["judge-paid"],
        "drafts": [draft],
    }
    again = cli("import", "--stage", "draft", "outline.txt", "--cohort", "judged")
    assert again.exit_code == 0 and spec_path.read_text() == spec_text
    assert again.stderr.splitlines()[-1] == (
        f"cohort judged: already lists every draft; unchanged: {spec_path}; run it with `daydream run --cohort judged`"
    )

    members = members_of("judged")
    essays = {m.template_id: m for m in members if m.stage == "essay" and m.parent_gen_id == draft}
    assert sorted(essays) == ["polish", "verbatim"] and {m.llm_model_id for m in essays.values()} == {"gen-paid"}
    by_root = {lineage.members[0].gen_id: lineage for lineage in schedule.lineages(members)}
    assert [m.stage for m in by_root[essay[0]].members] == ["essay", "evaluation"]  # an essay with no draft
    assert [m.stage for m in by_root[draft].members] == ["draft", "essay", "essay", "evaluation", "evaluation"]

    run = daydream("run", "--cohort", "judged")
    assert run.returncode == 0, run.stdout + run.stderr
    assert endpoint.stats["requests"] == 1 + 3  # the polish essay; judge-a of the imported essay and of both essays
    gens = project / "data" / "gens"
    assert (gens / "essay" / essays["verbatim"].gen_id / "parsed.txt").read_text() == DRAFT
    assert sum(DRAFT in prompt for prompt in chat_prompts(endpoint)) == 2  # the polish essay, the verbatim one's judge
    rows = {
        r["parent_gen_id"]: r
        for r in read_csv(project / "data" / "cohorts" / "judged" / "reports" / "parsed_scores.csv")
    }
    for template, member in essays.items():
        row = rows[member.gen_id]
        assert (
            row["draft_gen_id"],
            row["combo_id"],
            row["draft_template"],
            row["generation_template"],
            row["generation_model"],
        ) == (draft, "", "", template, "gen-paid")
    html = (project / "data" / "cohorts" / "judged" / "reports" / "report.html").read_text()
    marked = dict(re.findall(r'<tr data-essay="([0-9a-z]{16})" data-origin="([^"]*)">', html))
    assert marked == {
        essay[0]: "imported: reference.txt",
        essays["polish"].gen_id: "from imported draft: outline",
        essays["verbatim"].gen_id: "from imported draft: outline",
    }
    check_clean(project)

    removed = daydream("gens", "rm", draft, "--yes")
    assert removed.returncode == 0 and removed.stdout.splitlines()[-1] == "removed 5 generation(s)"


def test_a_spec_listing_drafts_takes_only_the_keys_that_still_mean_something(project):
    write(project / "config" / "cohorts" / "pilot.yaml", "drafts: [d1]\ndraft_templates: [ladder]\nk: 2\n")
    result = cli("plan", "--cohort", "pilot")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {project}/config/cohorts/pilot.yaml: drafts makes a curated cohort (essays "
        f"written from those drafts), so k, draft_templates would be ignored; remove them\n"
    )
    write(project / "config" / "cohorts" / "pilot.yaml", "drafts: [d1]\nessay_templates: [polish]\n")
    result = cli("plan", "--cohort", "pilot")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {project}/config/cohorts/pilot.yaml: draft d1 has no complete generation at "
        f"{project}/data/gens/draft/d1; remove it from the list, run its cohort first, or import "
        f"its text again\n"
    )


# --------------------------------------------------------------------------------------------------------- check


def test_check_knows_imported_texts(project):
    paths = Paths.from_env()
    catalog = load_catalog(paths, pool_limits(paths), load_settings(paths))
    write(project / "a.txt", OTHER)
    write(project / "b.txt", ESSAY)
    loose, listed = imported("--stage", "essay", "a.txt", "b.txt")
    write(project / "config" / "cohorts" / "judged.yaml", f"essays: [{listed}]\n")  # listed, not run yet
    orphan = Finding(
        "orphan",
        "essay",
        loose,
        f"imported from a.txt but in no cohort; list it in a curated cohort's "
        f"essays (or import it again with --cohort NAME), or remove it with "
        f"`daydream gens rm {loose} --yes`",
    )
    assert operations.check(paths, catalog) == [orphan]  # no parent, no template: nothing else to say
    (paths.gens / "essay" / listed / "parsed.txt").write_text("edited by hand\n")
    assert operations.check(paths, catalog) == [
        orphan,
        Finding(
            "text_changed",
            "essay",
            listed,
            f"parsed.txt is not the text imported from b.txt (sha256 differs); remove it "
            f"with `daydream gens rm {listed} --yes` and import the text again",
        ),
    ]
