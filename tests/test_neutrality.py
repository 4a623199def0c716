"""Neutral fixed inputs: config/neutrality.yaml validated, forbidden terms found in templates, every description level,
concept names and system prompts (file, line, term; exit 2; no call), and similarity to a target text."""

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import daydream

from daydream_luigi.cli import main
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import active_spec
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.neutrality import FixedInput, Rules, Term, fixed_inputs, load_rules, scan
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.execution.neutrality import check_inputs, require_neutral_inputs, system_prompts
from daydream_luigi.providers.local import minilm
from daydream_luigi.store.cohorts import load_spec

SHIPPED = "forbidden term '/day[- ]?dream/'"


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def rules_file(project: Path) -> Path:
    return project / "config" / "neutrality.yaml"


def raw(project: Path) -> Path:
    return project / "data" / "1_raw"


def plant(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_forbidden_term_in_a_template_and_in_an_article_description_stops_with_file_line_and_term(project, endpoint):
    ladder = raw(project) / "generation_templates" / "draft" / "ladder.txt"
    ladder.write_text(ladder.read_text().replace("Combine:\n", "Combine:\nLike a day-dreaming mind, wander.\n"))
    article = plant(
        raw(project) / "concepts" / "descriptions-article" / "ant-foraging.txt",
        "Ants leave trails.\nOthers follow the strongest.\nIdle ants DAYDREAM between trips.\n",
    )
    result = daydream("check", "inputs")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    terms = rules_file(project)
    assert result.stderr == (
        f"error: {ladder}: line 2: {SHIPPED} ('day-dream'); reword it (the terms are listed in {terms})\n"
        f"error: {article}: line 3: {SHIPPED} ('DAYDREAM'); reword it (the terms are listed in {terms})\n"
    )
    assert result.stdout.splitlines()[-1].endswith(": 2 problem(s)")
    assert endpoint.stats["requests"] == 0


def test_the_inputs_of_the_cohort_are_listed_and_neutral_inputs_pass(project):
    result = cli("check", "inputs", "--backend", "http")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    templates = raw(project) / "generation_templates"
    concepts = raw(project) / "concepts"
    # the active flags: templates ladder, sketch / polish, verbatim / judge-a, judge-b; concepts ant-foraging,
    # sourdough, tidal-power (each name, then each description level on disk); no system prompt over http
    assert lines[:-1] == [
        f"{templates / 'draft' / 'ladder.txt'}",
        f"{templates / 'draft' / 'sketch.txt'}",
        f"{templates / 'essay' / 'polish.txt'}",
        f"{templates / 'essay' / 'verbatim.txt'}",
        f"{templates / 'evaluation' / 'judge-a.txt'}",
        f"{templates / 'evaluation' / 'judge-b.txt'}",
        f"{raw(project) / 'concepts_metadata.csv'}: line 3",
        f"{concepts / 'descriptions-sentence' / 'ant-foraging.txt'}",
        f"{raw(project) / 'concepts_metadata.csv'}: line 4",
        f"{concepts / 'descriptions-paragraph' / 'sourdough.txt'}",
        f"{raw(project) / 'concepts_metadata.csv'}: line 2",
        f"{concepts / 'descriptions-sentence' / 'tidal-power.txt'}",
        f"{concepts / 'descriptions-paragraph' / 'tidal-power.txt'}",
    ]
    assert lines[-1].startswith("cohort active-") and lines[-1].endswith(
        f": 13 fixed input(s) checked against {rules_file(project)} (sha256 "
        f"{load_rules(Paths.from_env()).sha256[:12]}): 0 problem(s)"
    )
    assert cli("check").stdout == "0 problem(s) found\n"  # the store check is still `daydream check`


def test_concept_names_and_the_offline_judges_system_prompt_are_fixed_inputs_too(project):
    rules_file(project).write_text("forbidden:\n  - Sourdough\n  - calibrated critic\n")
    result = cli("check", "inputs", "--backend", "local")
    assert result.exit_code == 2
    terms = rules_file(project)
    assert result.stderr == (
        f"error: {raw(project) / 'concepts_metadata.csv'}: line 4: forbidden term 'Sourdough' ('Sourdough'); reword "
        f"it (the terms are listed in {terms})\n"
        f"error: the system prompt of evaluation calls to qwen-local: line 1: forbidden term 'calibrated critic' "
        f"('calibrated critic'); reword it (the terms are listed in {terms})\n"
    )


@pytest.mark.parametrize(
    "text, problems",
    [
        (
            "forbidden:\n  - /dream(/\n",
            [
                "{path}: forbidden term 1 '/dream(/' is not a valid regular expression (missing ), unterminated "
                "subpattern at position 5); fix it, or write it without the slashes to match it as plain text"
            ],
        ),
        (
            "forbidden: daydream\n",
            [
                "{path}: forbidden must be a list of terms (found 'daydream')",
                "{path}: nothing to check; list forbidden terms, or give a target text",
            ],
        ),
        (
            "forbidden: [dream, '']\nmax_similarity: 0.5\nmax_sim: 1\n",
            [
                "{path}: unknown key 'max_sim'; remove it (allowed: forbidden, target, max_similarity)",
                "{path}: forbidden term 2 must be a word or phrase, or a /regular expression/ (found '')",
                "{path}: max_similarity needs a target text to compare with; add target, or remove it",
            ],
        ),
        (
            "target: gone.txt\nmax_similarity: 2\n",
            [
                "{path}: target {config}/gone.txt not found; write the target's text there, or remove target",
                "{path}: max_similarity must be a number from 0 to 1 (found 2)",
            ],
        ),
    ],
)
def test_every_problem_of_the_neutrality_file_is_one_line(project, text, problems):
    rules_file(project).write_text(text)
    with pytest.raises(InputError) as err:
        load_rules(Paths.from_env())
    config = project / "config"
    assert err.value.problems == [p.format(path=rules_file(project), config=config) for p in problems]
    assert cli("check", "inputs").exit_code == 2


def rules(terms=(), target=None, limit=None) -> Rules:
    import re

    compiled = tuple(Term(t, re.compile(re.escape(t), re.I)) for t in terms)
    return Rules(Path("n.yaml"), "", compiled, Path("target.txt") if target else None, target, limit)


def test_similarity_to_the_target_is_listed_for_every_input_and_above_the_limit_is_an_error():
    inputs = [FixedInput("a.txt", "tides turn turbines"), FixedInput("b.txt", "ants follow trails")]

    def embed(texts):  # two axes: how much a text is about tides, and about ants
        return [[t.count("tide") + t.count("turbine"), t.count("ant")] for t in texts]

    found = scan(inputs, rules(target="turbines under tides", limit=0.8), embed)
    assert found.similarities == [1.0, 0.0]
    assert found.problems == [
        "a.txt: cosine similarity 1.000 to the target text target.txt is above max_similarity 0.8 (n.yaml); reword "
        "it so it does not describe the target"
    ]
    listed_only = scan(inputs, rules(target="turbines under tides"), embed)
    assert listed_only.similarities == [1.0, 0.0] and listed_only.problems == []
    assert scan(inputs, rules(["TURBINE"])).problems == [
        "a.txt: line 1: forbidden term 'TURBINE' ('turbine'); reword it (the terms are listed in n.yaml)"
    ]


def active(project: Path):
    paths = Paths.from_env()

    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    return paths, active_spec(catalog, settings, "local"), catalog, settings


def test_the_run_preflight_function_raises_on_a_forbidden_term_and_returns_the_scan_when_neutral(project):
    paths, spec, catalog, settings = active(project)
    checked = require_neutral_inputs(paths, spec, catalog, settings)
    assert checked.problems == [] and checked.rules.path == rules_file(project)
    assert [i.source for i in checked.inputs][-1] == "the system prompt of evaluation calls to qwen-local"
    assert list(system_prompts(spec, catalog, settings)) == ["the system prompt of evaluation calls to qwen-local"]
    sentence = raw(project) / "concepts" / "descriptions-sentence" / "tidal-power.txt"
    sentence.write_text("Energy from the sea, a daydream of engineers.\n")
    with pytest.raises(InputError) as err:
        require_neutral_inputs(paths, spec, catalog, settings)
    assert err.value.problems == [
        f"{sentence}: line 1: {SHIPPED} ('daydream'); reword it (the terms are listed in {rules_file(project)})"
    ]
    rules_file(project).unlink()
    assert require_neutral_inputs(paths, spec, catalog, settings) is None  # no rules, nothing to check


def test_a_target_is_compared_with_the_embedding_function_given(project):
    paths, spec, catalog, settings = active(project)
    plant(project / "config" / "target.txt", "Yeast and bacteria leaven bread.")
    rules_file(project).write_text("target: target.txt\nmax_similarity: 0.9\n")
    texts = {i.text for i in fixed_inputs(paths, spec, catalog, {})}
    assert "A starter of wild yeast and bacteria leavens bread.\n" in texts

    def embed(batch):
        return [[1.0, 0.0] if "leaven" in t else [0.0, 1.0] for t in batch]

    checked = check_inputs(paths, spec, catalog, settings, embed)
    sourdough = raw(project) / "concepts" / "descriptions-paragraph" / "sourdough.txt"
    assert checked.problems == [
        f"{sourdough}: cosine similarity 1.000 to the target text {project / 'config' / 'target.txt'} is above "
        f"max_similarity 0.9 ({rules_file(project)}); reword it so it does not describe the target"
    ]


@pytest.mark.skipif(minilm.unavailable_reason() is not None, reason=str(minilm.unavailable_reason()))
def test_with_a_target_the_offline_embedding_model_measures_every_input(project):
    plant(project / "config" / "target.txt", "A starter of wild yeast and bacteria leavens bread.\n")
    rules_file(project).write_text("target: target.txt\nmax_similarity: 0.95\n")
    result = cli("check", "inputs", "--backend", "http")
    assert result.exit_code == 2
    sourdough = raw(project) / "concepts" / "descriptions-paragraph" / "sourdough.txt"
    assert f"{sourdough}  similarity 1.000\n" in result.stdout  # the same text as the target
    similarities = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()[:-1]]
    assert len(similarities) == 13 and sorted(similarities)[-2] < 0.95
    assert result.stderr.startswith(f"error: {sourdough}: cosine similarity 1.000 to the target text")


SMALL = """concepts: [tidal-power, ant-foraging]
k: 2
draft_templates: [sketch]
essay_templates: [verbatim]
evaluation_templates: [judge-a]
generation_models: [gen-paid]
evaluation_models: [judge-paid]
"""


def small_cohort(project: Path) -> Path:
    return plant(project / "config" / "cohorts" / "small.yaml", SMALL)


@pytest.mark.parametrize("command", [("run",), ("run", "--dry-run"), ("plan",)])
def test_a_forbidden_term_stops_run_and_plan_before_any_call_and_anything_written(project, endpoint, command):
    small_cohort(project)
    sketch = raw(project) / "generation_templates" / "draft" / "sketch.txt"
    sketch.write_text(sketch.read_text() + "Let the mind daydream.\n")
    article = plant(
        raw(project) / "concepts" / "descriptions-article" / "tidal-power.txt",
        "Tides rise.\nA default mode network of turbines.\n",
    )
    result = daydream(*command, "--cohort", "small", "--backend", "http")
    assert result.returncode == 2, result.stdout + result.stderr
    terms = rules_file(project)
    assert result.stderr == (
        f"error: {sketch}: line 2: {SHIPPED} ('daydream'); reword it (the terms are listed in {terms})\n"
        f"error: {article}: line 2: forbidden term '/default[- ]mode network/' ('default mode network'); reword it "
        f"(the terms are listed in {terms})\n"
    )
    assert result.stdout == ""
    assert endpoint.stats["requests"] == 0
    assert not (project / "data" / "cohorts").exists() and not (project / "data" / "gens").exists()


def test_a_run_records_the_rules_it_was_checked_against_and_a_project_without_rules_runs_unchecked(project, endpoint):
    small_cohort(project)
    result = daydream("run", "--cohort", "small", "--backend", "http")
    assert result.returncode == 0, result.stdout + result.stderr
    assert endpoint.stats["requests"] == 2  # one draft, one evaluation (the essay is a verbatim copy)
    recorded = json.loads((project / "data" / "cohorts" / "small" / "neutrality.json").read_text())
    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    spec = load_spec(paths, "small", catalog, settings, "http")
    inputs = fixed_inputs(paths, spec, catalog, {})
    assert recorded == {
        "checked": True,
        "rules_file": str(rules_file(project)),
        "sha256": hashlib.sha256(rules_file(project).read_bytes()).hexdigest(),
        "forbidden": ["/day[- ]?dream/", "/default[- ]mode network/"],
        "target": None,
        "max_similarity": None,
        "inputs": [
            {
                "source": item.source,
                "line": item.first_line,
                "sha256": hashlib.sha256(item.text.encode()).hexdigest(),
                "similarity": None,
            }
            for item in inputs
        ],
        "problems": [],
    }
    assert [i["source"] for i in recorded["inputs"]][:3] == [
        str(raw(project) / "generation_templates" / "draft" / "sketch.txt"),
        str(raw(project) / "generation_templates" / "essay" / "verbatim.txt"),
        str(raw(project) / "generation_templates" / "evaluation" / "judge-a.txt"),
    ]
    rules_file(project).unlink()
    again = daydream("run", "--cohort", "small", "--backend", "http")
    assert again.returncode == 0, again.stdout + again.stderr
    assert endpoint.stats["requests"] == 2
    assert json.loads((project / "data" / "cohorts" / "small" / "neutrality.json").read_text()) == {
        "checked": False,
        "rules_file": str(rules_file(project)),
    }


def test_the_target_vectors_are_kept_by_text_so_a_second_check_loads_no_model(project, monkeypatch):
    from daydream_luigi.execution import neutrality
    from daydream_luigi.providers.embeddings import text_embedding_path

    paths, spec, catalog, settings = active(project)
    plant(project / "config" / "target.txt", "Yeast and bacteria leaven bread.")
    rules_file(project).write_text("target: target.txt\nmax_similarity: 0.9\n")
    loaded, embedded = [], []

    def fake_model(rules):
        loaded.append(rules)

        def embed(texts):
            embedded.append(list(texts))
            return [[1.0, 0.0] if "leaven bread" in t else [0.0, 1.0] for t in texts]

        return embed

    monkeypatch.setattr(neutrality, "offline_embedder", fake_model)
    first = neutrality.require_neutral_inputs(paths, spec, catalog, settings)
    texts = ["Yeast and bacteria leaven bread.", *(item.text for item in first.inputs)]
    assert loaded == [rules_file(project)] and embedded == [list(dict.fromkeys(texts))]
    kept = text_embedding_path(paths.embedding_cache, "all-MiniLM-L6-v2", texts[0])
    assert kept.parent.parent == project / "data" / "cache" / "embeddings"
    assert json.loads(kept.read_text())["embedding"] == [1.0, 0.0]
    assert first.similarities[[i.source for i in first.inputs].index(str(raw(project) / "concepts_metadata.csv"))] == 0

    second = neutrality.require_neutral_inputs(paths, spec, catalog, settings)
    assert second.similarities == first.similarities
    assert len(loaded) == 1 and len(embedded) == 1  # every vector read back, the model never loaded

    sourdough = raw(project) / "concepts" / "descriptions-paragraph" / "sourdough.txt"
    sourdough.write_text("A starter of wild yeast will leaven bread.\n")
    with pytest.raises(InputError) as err:
        neutrality.require_neutral_inputs(paths, spec, catalog, settings)
    assert err.value.problems == [
        f"{sourdough}: cosine similarity 1.000 to the target text {project / 'config' / 'target.txt'} is above "
        f"max_similarity 0.9 ({rules_file(project)}); reword it so it does not describe the target"
    ]
    assert embedded[1:] == [["A starter of wild yeast will leaven bread.\n"]]  # only the changed text is embedded


@pytest.mark.parametrize("cohort, backend", [(None, "local"), (None, "http"), ("smoke", "local")])
def test_the_shipped_inputs_pass_the_shipped_rules(monkeypatch, cohort, backend):
    """A fresh clone's `make run` (and the smoke cohort) is not stopped by the terms config/neutrality.yaml ships."""
    from conftest import REPO

    monkeypatch.setenv("DAYDREAM_DATA_ROOT", str(REPO / "data"))
    monkeypatch.setenv("DAYDREAM_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.delenv("GEN_TEMPLATES_ROOT", raising=False)
    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    spec = (
        active_spec(catalog, settings, backend)
        if cohort is None
        else load_spec(paths, cohort, catalog, settings, backend)
    )
    checked = require_neutral_inputs(paths, spec, catalog, settings)
    assert checked.rules.path == REPO / "config" / "neutrality.yaml" and checked.problems == []
    assert len(checked.inputs) > 10
