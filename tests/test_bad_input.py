"""Bad input: one clear message naming the file and row or id plus the fix, exit code 2, nothing written."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream_luigi.cli import main


def edit(relative: str, old: str, new: str):
    def apply(root: Path):
        path = root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
    return apply


def write(relative: str, text: str):
    def apply(root: Path):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return apply


def delete(relative: str):
    return lambda root: (root / relative).unlink()


def fake_essay(gen_id: str, parent: str):
    """An essay on disk whose draft does not exist (a dangling parent)."""
    return write(f"data/gens/essay/{gen_id}/metadata.json",
                 json.dumps({"gen_id": gen_id, "parent_gen_id": parent, "combo_id": "c", "template_id": "polish",
                             "llm_model_id": "gen-paid", "replicate": 1}))


RAW = "data/1_raw"
CASES = [  # (id, change, extra CLI args, expected message with {root} for the project folder)
    ("missing-column", edit(f"{RAW}/concepts_metadata.csv", "concept_id,name,active", "concept_id,name"), [],
     "{root}/data/1_raw/concepts_metadata.csv: missing column(s) active; the header must contain concept_id,name,active"),
    ("missing-catalog", delete(f"{RAW}/essay_templates.csv"), [],
     "{root}/data/1_raw/essay_templates.csv: file not found; create it (see the README, 'Inputs')"),
    ("extra-field", edit(f"{RAW}/concepts_metadata.csv", "Sourdough,true", "Sourdough, bread,true"), [],
     "{root}/data/1_raw/concepts_metadata.csv: line 4: expected 3 fields, found 4; quote fields that contain commas"),
    ("unclosed-quote", edit(f"{RAW}/llm_models.csv", "vendor/judge-model", '"vendor/judge-model'), [],
     "{root}/data/1_raw/llm_models.csv: line 3: not valid CSV (unexpected end of data); check the quotes on that line"),
    ("duplicate-concept", edit(f"{RAW}/concepts_metadata.csv", "ant-foraging,", "tidal-power,"), [],
     "{root}/data/1_raw/concepts_metadata.csv: line 3: duplicate concept_id 'tidal-power' (first on line 2); "
     "remove or rename one of them"),
    ("duplicate-template", edit(f"{RAW}/draft_templates.csv", "sketch,Sketch", "ladder,Sketch"), [],
     "{root}/data/1_raw/draft_templates.csv: line 3: duplicate template_id 'ladder' (first on line 2); "
     "remove or rename one of them"),
    ("duplicate-model", edit(f"{RAW}/llm_models.csv", "judge-paid,", "gen-paid,"), [],
     "{root}/data/1_raw/llm_models.csv: line 3: duplicate id 'gen-paid' (first on line 2); remove or rename one of them"),
    ("id-with-slash", edit(f"{RAW}/concepts_metadata.csv", "glaciers,", "../glaciers,"), [],
     "{root}/data/1_raw/concepts_metadata.csv: line 5: concept_id '../glaciers' may only contain letters, digits, "
     "'.', '_' and '-'; rename it"),
    ("id-dot-dot", edit(f"{RAW}/llm_models.csv", "free-one,", "..,"), [],
     "{root}/data/1_raw/llm_models.csv: line 4: id '..' may not start with '.' or contain '..'; rename it"),
    ("id-with-space", edit(f"{RAW}/draft_templates.csv", "plain,Plain", "plain text,Plain"), [],
     "{root}/data/1_raw/draft_templates.csv: line 4: template_id 'plain text' may only contain letters, digits, "
     "'.', '_' and '-'; rename it"),
    ("unknown-draft-parser", edit(f"{RAW}/draft_templates.csv", "essay_block", "essay_blok"), [],
     "{root}/data/1_raw/draft_templates.csv: line 3: unknown parser 'essay_blok' for template 'sketch'; "
     "use one of: essay_block, essay_idea_last or blank"),
    ("unknown-generator", edit(f"{RAW}/essay_templates.csv", ",copy", ",paste"), [],
     "{root}/data/1_raw/essay_templates.csv: line 3: unknown generator 'paste' for template 'verbatim'; "
     "use one of: copy, llm"),
    ("unknown-score-parser", edit(f"{RAW}/evaluation_templates.csv", "complex", "fancy"), [],
     "{root}/data/1_raw/evaluation_templates.csv: line 3: unknown parser 'fancy' for template 'judge-b'; "
     "use one of: complex, in_last_line"),
    ("unknown-pool", edit(f"{RAW}/llm_models.csv", "free,0", "gratis,0"), [],
     "{root}/data/1_raw/llm_models.csv: line 4: model 'free-one' uses unknown pool 'gratis'; use one of free, "
     "local, paid or add it to [resources] in config/luigi.cfg"),
    ("bad-flag", edit(f"{RAW}/concepts_metadata.csv", "Glaciers,false", "Glaciers,maybe"), [],
     "{root}/data/1_raw/concepts_metadata.csv: line 5: active 'maybe' is not true or false"),
    ("missing-template-file", delete(f"{RAW}/generation_templates/evaluation/judge-a.txt"), [],
     "{root}/data/1_raw/evaluation_templates.csv: line 2: template file "
     "{root}/data/1_raw/generation_templates/evaluation/judge-a.txt not found for template 'judge-a'; "
     "create it or remove the row"),
    ("template-syntax", write(f"{RAW}/generation_templates/essay/polish.txt", "Essay\n\n{% if draft_block %}\n"), [],
     "{root}/data/1_raw/generation_templates/essay/polish.txt: template 'polish' syntax error on line 3: Unexpected "
     "end of template; fix the template"),
    ("template-undefined", write(f"{RAW}/generation_templates/evaluation/judge-b.txt", "{{ essay }} SCORE"), [],
     "{root}/data/1_raw/generation_templates/evaluation/judge-b.txt: template 'judge-b' uses undefined variable "
     "'essay' (available for evaluation: response); fix the template"),
    ("empty-pool", lambda root: (root / RAW / "concepts_metadata.csv").write_text("concept_id,name,active\n"), [],
     "concepts_metadata.csv: no active concepts; set active=true on at least k concepts"),
    ("k-too-large", edit("config/daydream.yaml", "k: 2", "k: 5"), [],
     "k=5 but only 3 active concept(s); lower k in config/daydream.yaml or activate more concepts in "
     "concepts_metadata.csv"),
    ("bad-level", edit("config/daydream.yaml", "description_level: paragraph", "description_level: essay"), [],
     "{root}/config/daydream.yaml: description_level 'essay' is not one of sentence, paragraph, article"),
    ("unknown-cohort", lambda root: None, ["--cohort", "nope"],
     "unknown cohort 'nope': {root}/config/cohorts/nope.yaml does not exist; known cohorts: smoke (or build one with "
     "`daydream cohort build`)"),
    ("cohort-name-escapes", lambda root: None, ["--cohort", "../x"],
     "cohort name '../x' may only contain letters, digits, '.', '_' and '-'; rename it to something like 'my-id_1'"),
    ("bad-yaml", write("config/cohorts/pilot.yaml", "draft_templates: [ladder\n"), ["--cohort", "pilot"],
     None),  # the YAML parser's own message follows the file name
    ("spec-unknown-key", write("config/cohorts/pilot.yaml", "drafts: [ladder]\n"), ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: unknown key 'drafts'; allowed: combos, concepts, description_level, "
     "draft_templates, essay_templates, essays, evaluation_models, evaluation_templates, generation_models, k, "
     "replicates"),
    ("spec-unknown-template", write("config/cohorts/pilot.yaml", "draft_templates: [ladder, zigzag]\n"),
     ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: draft_templates lists unknown id 'zigzag'; known: ladder, plain, sketch"),
    ("spec-unknown-model", write("config/cohorts/pilot.yaml", "evaluation_models: [gpt-9]\n"), ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: evaluation_models lists unknown id 'gpt-9'; known: free-one, gen-paid, "
     "judge-paid, qwen-local"),
    ("spec-unknown-combo", write("config/cohorts/pilot.yaml", "combos: [combo_v1_000000000000]\n"),
     ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: combos lists combo_v1_000000000000 not found in "
     "{root}/data/combo_mappings.csv; run a cohort that creates them first or list concepts instead"),
    ("curated-missing-essay", write("config/cohorts/pilot.yaml", "essays: [abc123]\n"), ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: essay abc123 has no complete generation at {root}/data/gens/essay/abc123; "
     "remove it from the list or run its cohort first"),
    ("curated-escaping-id", write("config/cohorts/pilot.yaml", "essays: ['../../etc']\n"), ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: essay id '../../etc' may only contain letters, digits, '.', '_' and '-'"),
    ("dangling-parent", lambda root: (write("config/cohorts/pilot.yaml", "essays: [e1]\n")(root),
                                      fake_essay("e1", "d-gone")(root)), ["--cohort", "pilot"],
     "{root}/config/cohorts/pilot.yaml: essay e1 has parent draft d-gone, which has no complete generation at "
     "{root}/data/gens/draft/d-gone; remove the essay from the list"),
    ("settings-missing-key", edit("config/daydream.yaml", "min_draft_lines: 3", "min_lines: 3"), [],
     "{root}/config/daydream.yaml: missing setting(s) min_draft_lines; add them (see the README)"),
]


@pytest.mark.parametrize("change,args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message_and_exit_2(project, change, args, expected):
    change(project)
    gens_before = sorted(p.relative_to(project) for p in (project / "data" / "gens").rglob("*")) \
        if (project / "data" / "gens").exists() else []
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    if expected is None:
        assert lines[0] == f"error: {project}/config/cohorts/pilot.yaml: not valid YAML on line 2 (expected ',' or " \
                           "']', but got '<stream end>'); fix the syntax"
    else:
        assert lines[0] == "error: " + expected.format(root=project)
    gens_after = sorted(p.relative_to(project) for p in (project / "data" / "gens").rglob("*")) \
        if (project / "data" / "gens").exists() else []
    assert gens_after == gens_before
    assert not (project / "data" / "cohorts").exists()


def test_every_problem_in_a_file_is_reported_at_once(project):
    edit(f"{RAW}/draft_templates.csv", "essay_block", "nope")(project)
    edit(f"{RAW}/llm_models.csv", "free,0", "gratis,0")(project)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 2
