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


def write_bytes(relative: str, data: bytes):
    return lambda root: (root / relative).write_bytes(data)


def delete(relative: str):
    return lambda root: (root / relative).unlink()


def fake_essay(gen_id: str, parent: str):
    """An essay on disk whose draft does not exist (a dangling parent)."""
    return write(
        f"data/gens/essay/{gen_id}/metadata.json",
        json.dumps(
            {
                "gen_id": gen_id,
                "parent_gen_id": parent,
                "combo_id": "c",
                "template_id": "polish",
                "llm_model_id": "gen-paid",
                "replicate": 1,
            }
        ),
    )


RAW = "data/1_raw"
TEMPLATES = f"{RAW}/generation_templates"
SETTINGS = "config/daydream.yaml"
SPEC = "config/cohorts/pilot.yaml"
PILOT = ["--cohort", "pilot"]
URL_FORMS = "write it like https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1"
CASES = [  # (id, change, extra CLI args, expected message with {root} for the project folder)
    (
        "missing-column",
        edit(f"{RAW}/concepts_metadata.csv", "concept_id,name,active", "concept_id,name"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: missing column(s) active; the header must contain concept_id,name,active",
    ),
    (
        "missing-catalog",
        delete(f"{RAW}/essay_templates.csv"),
        [],
        "{root}/data/1_raw/essay_templates.csv: file not found; create it (see the README, 'Inputs')",
    ),
    (
        "extra-field",
        edit(f"{RAW}/concepts_metadata.csv", "Sourdough,true", "Sourdough, bread,true"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 4: expected 3 fields, found 4; quote fields that contain commas",
    ),
    (
        "unclosed-quote",
        edit(f"{RAW}/llm_models.csv", "vendor/judge-model", '"vendor/judge-model'),
        [],
        "{root}/data/1_raw/llm_models.csv: line 3: not valid CSV (unexpected end of data); check the quotes on that line",
    ),
    (
        "duplicate-concept",
        edit(f"{RAW}/concepts_metadata.csv", "ant-foraging,", "tidal-power,"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 3: duplicate concept_id 'tidal-power' (first on line 2); "
        "remove or rename one of them",
    ),
    (
        "duplicate-template",
        edit(f"{RAW}/draft_templates.csv", "sketch,Sketch", "ladder,Sketch"),
        [],
        "{root}/data/1_raw/draft_templates.csv: line 3: duplicate template_id 'ladder' (first on line 2); "
        "remove or rename one of them",
    ),
    (
        "duplicate-model",
        edit(f"{RAW}/llm_models.csv", "judge-paid,", "gen-paid,"),
        [],
        "{root}/data/1_raw/llm_models.csv: line 3: duplicate id 'gen-paid' (first on line 2); remove or rename one of them",
    ),
    (
        "id-with-slash",
        edit(f"{RAW}/concepts_metadata.csv", "glaciers,", "../glaciers,"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 5: concept_id '../glaciers' may only contain letters, digits, "
        "'.', '_' and '-'; rename it",
    ),
    (
        "id-dot-dot",
        edit(f"{RAW}/llm_models.csv", "free-one,", "..,"),
        [],
        "{root}/data/1_raw/llm_models.csv: line 4: id '..' may not start with '.' or contain '..'; rename it",
    ),
    (
        "id-with-space",
        edit(f"{RAW}/draft_templates.csv", "plain,Plain", "plain text,Plain"),
        [],
        "{root}/data/1_raw/draft_templates.csv: line 4: template_id 'plain text' may only contain letters, digits, "
        "'.', '_' and '-'; rename it",
    ),
    (
        "unknown-draft-parser",
        edit(f"{RAW}/draft_templates.csv", "essay_block", "essay_blok"),
        [],
        "{root}/data/1_raw/draft_templates.csv: line 3: unknown parser 'essay_blok' for template 'sketch'; "
        "use one of: essay_block, essay_idea_last or blank",
    ),
    (
        "unknown-generator",
        edit(f"{RAW}/essay_templates.csv", ",copy", ",paste"),
        [],
        "{root}/data/1_raw/essay_templates.csv: line 3: unknown generator 'paste' for template 'verbatim'; "
        "use one of: copy, llm",
    ),
    (
        "unknown-score-parser",
        edit(f"{RAW}/evaluation_templates.csv", "complex", "fancy"),
        [],
        "{root}/data/1_raw/evaluation_templates.csv: line 3: unknown parser 'fancy' for template 'judge-b'; "
        "use one of: complex, in_last_line, yes_no",
    ),
    (
        "unknown-pool",
        edit(f"{RAW}/llm_models.csv", "free,0", "gratis,0"),
        [],
        "{root}/data/1_raw/llm_models.csv: line 4: model 'free-one' uses unknown pool 'gratis'; use one of free, "
        "local, paid or add it to [resources] in config/luigi.cfg",
    ),
    (
        "bad-flag",
        edit(f"{RAW}/concepts_metadata.csv", "Glaciers,false", "Glaciers,maybe"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 5: active 'maybe' is not true or false",
    ),
    (
        "missing-template-file",
        delete(f"{RAW}/generation_templates/evaluation/judge-a.txt"),
        [],
        "{root}/data/1_raw/evaluation_templates.csv: line 2: template file "
        "{root}/data/1_raw/generation_templates/evaluation/judge-a.txt not found for template 'judge-a'; "
        "create it or remove the row",
    ),
    (
        "template-syntax",
        write(f"{RAW}/generation_templates/essay/polish.txt", "Essay\n\n{% if draft_block %}\n"),
        [],
        "{root}/data/1_raw/generation_templates/essay/polish.txt: template 'polish' syntax error on line 3: Unexpected "
        "end of template; fix the template",
    ),
    (
        "template-undefined",
        write(f"{RAW}/generation_templates/evaluation/judge-b.txt", "{{ essay }} SCORE"),
        [],
        "{root}/data/1_raw/generation_templates/evaluation/judge-b.txt: template 'judge-b' uses undefined variable "
        "'essay' (available for evaluation: response); fix the template",
    ),
    (
        "empty-pool",
        lambda root: (root / RAW / "concepts_metadata.csv").write_text("concept_id,name,active\n"),
        [],
        "concepts_metadata.csv: no active concepts; set active=true on at least k concepts",
    ),
    (
        "k-too-large",
        edit("config/daydream.yaml", "k: 2", "k: 5"),
        [],
        "k=5 but only 3 active concept(s); lower k in config/daydream.yaml or activate more concepts in "
        "concepts_metadata.csv",
    ),
    (
        "bad-level",
        edit("config/daydream.yaml", "description_level: paragraph", "description_level: essay"),
        [],
        "{root}/config/daydream.yaml: description_level 'essay' is not one of sentence, paragraph, article",
    ),
    (
        "unknown-cohort",
        lambda root: None,
        ["--cohort", "nope"],
        "unknown cohort 'nope': {root}/config/cohorts/nope.yaml does not exist; known cohorts: smoke (or build one with "
        "`daydream cohort build`)",
    ),
    (
        "cohort-name-escapes",
        lambda root: None,
        ["--cohort", "../x"],
        "cohort name '../x' may only contain letters, digits, '.', '_' and '-'; rename it to something like 'my-id_1'",
    ),
    (
        "bad-yaml",
        write("config/cohorts/pilot.yaml", "draft_templates: [ladder\n"),
        ["--cohort", "pilot"],
        None,
    ),  # the YAML parser's own message follows the file name
    (
        "spec-unknown-key",
        write("config/cohorts/pilot.yaml", "draft_template: [ladder]\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: unknown key 'draft_template'; allowed: combos, concepts, description_level, "
        "draft_templates, drafts, essay_templates, essays, evaluation_models, evaluation_templates, gates, "
        "generation_models, k, replicates",
    ),
    (
        "spec-unknown-template",
        write("config/cohorts/pilot.yaml", "draft_templates: [ladder, zigzag]\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: draft_templates lists unknown id 'zigzag'; known: ladder, plain, sketch",
    ),
    (
        "spec-unknown-model",
        write("config/cohorts/pilot.yaml", "evaluation_models: [gpt-9]\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: evaluation_models lists unknown id 'gpt-9'; known: free-one, gen-paid, "
        "judge-paid, qwen-local",
    ),
    (
        "spec-unknown-combo",
        write("config/cohorts/pilot.yaml", "combos: [combo_v1_000000000000]\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: combos lists combo_v1_000000000000 not found in "
        "{root}/data/combo_mappings.csv; run a cohort that creates them first or list concepts instead",
    ),
    (
        "curated-missing-essay",
        write("config/cohorts/pilot.yaml", "essays: [abc123]\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: essay abc123 has no complete generation at {root}/data/gens/essay/abc123; "
        "remove it from the list, run its cohort first, or import its text again",
    ),
    (
        "curated-escaping-id",
        write("config/cohorts/pilot.yaml", "essays: ['../../etc']\n"),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: essay id '../../etc' may only contain letters, digits, '.', '_' and '-'",
    ),
    (
        "dangling-parent",
        lambda root: (write("config/cohorts/pilot.yaml", "essays: [e1]\n")(root), fake_essay("e1", "d-gone")(root)),
        ["--cohort", "pilot"],
        "{root}/config/cohorts/pilot.yaml: essay e1 has parent draft d-gone, which has no complete generation at "
        "{root}/data/gens/draft/d-gone; remove the essay from the list",
    ),
    (
        "settings-missing-key",
        edit("config/daydream.yaml", "min_draft_lines: 3", "# min_draft_lines: 3"),
        [],
        "{root}/config/daydream.yaml: missing setting(s) min_draft_lines; add them (see the README)",
    ),
    # templates: not empty, self-contained, renderable within the limit, UTF-8
    (
        "empty-template",
        write(f"{TEMPLATES}/essay/polish.txt", "  \n\t\n"),
        [],
        "{root}/data/1_raw/generation_templates/essay/polish.txt: template 'polish' is empty (or only whitespace); "
        "fix the template",
    ),
    (
        "template-include",
        write(f"{TEMPLATES}/draft/ladder.txt", "Combine:\n{% include 'notes.txt' %}\n"),
        [],
        "{root}/data/1_raw/generation_templates/draft/ladder.txt: template 'ladder' loads another file "
        "({{% include %}} on line 2), but templates are self-contained (include, import, from and extends are rejected); "
        "fix the template",
    ),
    (
        "template-import",
        write(f"{TEMPLATES}/evaluation/judge-a.txt", "{% import 'm.txt' as m %}{{ response }}"),
        [],
        "{root}/data/1_raw/generation_templates/evaluation/judge-a.txt: template 'judge-a' loads another file "
        "({{% import %}} on line 1), but templates are self-contained (include, import, from and extends are rejected); "
        "fix the template",
    ),
    (
        "template-from-import",
        write(f"{TEMPLATES}/evaluation/judge-b.txt", "Judge\n\n{% from 'm.txt' import rubric %}{{ response }}"),
        [],
        "{root}/data/1_raw/generation_templates/evaluation/judge-b.txt: template 'judge-b' loads another file "
        "({{% from %}} on line 3), but templates are self-contained (include, import, from and extends are rejected); "
        "fix the template",
    ),
    (
        "template-extends",
        write(f"{TEMPLATES}/essay/polish.txt", "{% extends 'base.txt' %}"),
        [],
        "{root}/data/1_raw/generation_templates/essay/polish.txt: template 'polish' loads another file "
        "({{% extends %}} on line 1), but templates are self-contained (include, import, from and extends are rejected); "
        "fix the template",
    ),
    (
        "template-runtime-error",
        write(f"{TEMPLATES}/draft/sketch.txt", "{{ concepts | length / 0 }}"),
        [],
        "{root}/data/1_raw/generation_templates/draft/sketch.txt: template 'sketch' failed to render for "
        "combo_v1_b62accda497e (ant-foraging, sourdough): ZeroDivisionError: division by zero",
    ),
    (
        "oversized-render",
        write(f"{TEMPLATES}/draft/ladder.txt", "x" * 50_000 + "{{ concepts | length }}"),
        [],
        "{root}/data/1_raw/generation_templates/draft/ladder.txt: template 'ladder' failed to render for "
        "combo_v1_b62accda497e (ant-foraging, sourdough): the rendered prompt has 50,001 characters, more than "
        "limits.max_prompt_chars (50,000) in config/daydream.yaml; shorten the template or its inputs, or raise the "
        "limit",
    ),
    (
        "template-not-utf8",
        write_bytes(f"{TEMPLATES}/essay/polish.txt", b"Essay \xe9t\xe9 {{ draft_block }}"),
        [],
        "{root}/data/1_raw/generation_templates/essay/polish.txt: not UTF-8 text (invalid continuation byte); "
        "save it as UTF-8",
    ),
    # concepts need a description (unless allow_name_only_concepts)
    (
        "missing-description",
        delete(f"{RAW}/concepts/descriptions-sentence/ant-foraging.txt"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 3: concept 'ant-foraging' has no description: none of "
        "{root}/data/1_raw/concepts/descriptions-{{sentence,paragraph,article}}/ant-foraging.txt has text; write one, "
        "or set allow_name_only_concepts: true in {root}/config/daydream.yaml",
    ),
    (
        "blank-description",
        write(f"{RAW}/concepts/descriptions-paragraph/sourdough.txt", "\n  \n"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 4: concept 'sourdough' has no description: none of "
        "{root}/data/1_raw/concepts/descriptions-{{sentence,paragraph,article}}/sourdough.txt has text; write one, "
        "or set allow_name_only_concepts: true in {root}/config/daydream.yaml",
    ),
    (
        "description-not-utf8",
        write_bytes(f"{RAW}/concepts/descriptions-sentence/glaciers.txt", b"\xff\xfe\x00"),
        [],
        "{root}/data/1_raw/concepts/descriptions-sentence/glaciers.txt: not UTF-8 text (invalid start byte); "
        "save it as UTF-8",
    ),
    # config/daydream.yaml: typed and ranged, never truncated
    (
        "k-fraction",
        edit(SETTINGS, "k: 2", "k: 1.5"),
        [],
        "{root}/config/daydream.yaml: k must be a whole number >= 1 (found 1.5)",
    ),
    (
        "k-word",
        edit(SETTINGS, "k: 2", "k: two"),
        [],
        "{root}/config/daydream.yaml: k must be a whole number >= 1 (found 'two')",
    ),
    (
        "k-boolean",
        edit(SETTINGS, "k: 2", "k: true"),
        [],
        "{root}/config/daydream.yaml: k must be a whole number >= 1 (found true)",
    ),
    (
        "replicates-zero",
        edit(SETTINGS, "  essay: 1", "  essay: 0"),
        [],
        "{root}/config/daydream.yaml: replicates.essay must be a whole number >= 1 (found 0)",
    ),
    (
        "temperature-range",
        edit(SETTINGS, "temperature: 0.3", "temperature: 3"),
        [],
        "{root}/config/daydream.yaml: stages.evaluation.temperature must be a number from 0 to 2 (found 3)",
    ),
    (
        "max-tokens-word",
        edit(SETTINGS, "max_tokens: 600", "max_tokens: lots"),
        [],
        "{root}/config/daydream.yaml: stages.draft.max_tokens must be a whole number >= 1 (found 'lots')",
    ),
    (
        "timeout-zero",
        edit(SETTINGS, "read_timeout: 300}", "read_timeout: 0}"),
        [],
        "{root}/config/daydream.yaml: stages.draft.read_timeout must be a number > 0 (found 0)",
    ),
    (
        "retry-negative",
        edit(SETTINGS, "max_attempts: 6", "max_attempts: -1"),
        [],
        "{root}/config/daydream.yaml: retry.max_attempts must be a whole number >= 1 (found -1)",
    ),
    (
        "unknown-setting",
        edit(SETTINGS, "  part_size: 600", "  window: 4\n  part_size: 600"),
        [],
        "{root}/config/daydream.yaml: unknown setting scheduling.window; remove it (allowed in scheduling: part_size)",
    ),
    (
        "stage-not-mapping",
        edit(
            SETTINGS,
            "  essay:      {temperature: 0.7, max_tokens: 700, connect_timeout: 10, read_timeout: 300}",
            "  essay: 0.7",
        ),
        [],
        "{root}/config/daydream.yaml: stages.essay must be a mapping of temperature, max_tokens, connect_timeout, "
        "read_timeout, reasoning (found 0.7)",
    ),
    (
        "guard-negative",
        edit(SETTINGS, "max_calls: 1000", "max_calls: -5"),
        [],
        "{root}/config/daydream.yaml: guard.max_calls must be a whole number >= 0 (found -5)",
    ),
    (
        "guard-cost-word",
        edit(SETTINGS, "max_cost_usd: 10", "max_cost_usd: ten"),
        [],
        "{root}/config/daydream.yaml: guard.max_cost_usd must be a number >= 0 (found 'ten')",
    ),
    (
        "pool-rate-typo",
        edit(SETTINGS, "  free: {requests_per_minute: 20}", "  fre: {requests_per_minute: 20}"),
        [],
        "config/daydream.yaml: pools.fre: no pool 'fre' in config/luigi.cfg [resources] (known: free, local, paid); add "
        "it there or remove it here",
    ),
    (
        "prompt-limit-zero",
        edit(SETTINGS, "max_prompt_chars: 50000", "max_prompt_chars: 0"),
        [],
        "{root}/config/daydream.yaml: limits.max_prompt_chars must be a whole number >= 1 (found 0)",
    ),
    (
        "name-only-not-boolean",
        edit(SETTINGS, "allow_name_only_concepts: false", "allow_name_only_concepts: maybe"),
        [],
        "{root}/config/daydream.yaml: allow_name_only_concepts must be true or false (found 'maybe')",
    ),
    # config/luigi.cfg pool limits
    (
        "pool-limit-word",
        edit("config/luigi.cfg", "paid = 5", "paid = five"),
        [],
        "{root}/config/luigi.cfg: [resources] paid must be a whole number >= 1 (found 'five'); it is how many calls of "
        "pool 'paid' may run at once",
    ),
    (
        "pool-limit-zero",
        edit("config/luigi.cfg", "paid = 5", "paid = 0"),
        [],
        "{root}/config/luigi.cfg: [resources] paid must be a whole number >= 1 (found '0'); it is how many calls of "
        "pool 'paid' may run at once",
    ),
    # endpoints: declared, well-formed, keys only over https or loopback, never in the file
    (
        "unknown-provider",
        edit(f"{RAW}/llm_models.csv", "openrouter,Judge", "openrouterr,Judge"),
        [],
        "{root}/data/1_raw/llm_models.csv: line 3: model 'judge-paid' uses unknown provider 'openrouterr'; use one of "
        "embedded, openrouter or declare it under endpoints: in {root}/config/daydream.yaml",
    ),
    (
        "plain-http-key-url",
        edit(SETTINGS, "base_url: https://openrouter.ai/api/v1", "base_url: http://openrouter.example/api/v1"),
        [],
        "{root}/config/daydream.yaml: endpoints.openrouter.base_url http://openrouter.example/api/v1 is plain http to "
        "another machine, so the key would travel unencrypted; use https://, or a loopback address (127.0.0.1, ::1, "
        "localhost), e.g. through an SSH tunnel",
    ),
    (
        "base-url-without-scheme",
        edit(SETTINGS, "base_url: https://openrouter.ai/api/v1", "base_url: openrouter.ai/api/v1"),
        [],
        "{root}/config/daydream.yaml: endpoints.openrouter.base_url openrouter.ai/api/v1 is not a well-formed base URL "
        "(it needs http:// or https:// and a host); " + URL_FORMS,
    ),
    (
        "key-value-as-key-env",
        edit(SETTINGS, "api_key_env: OPENROUTER_API_KEY", "api_key_env: fake-or-v1-0123abcd"),
        [],
        "{root}/config/daydream.yaml: endpoints.openrouter.api_key_env must be the name of an environment variable "
        "(letters, digits and _, e.g. OPENROUTER_API_KEY), not its value",
    ),
    (
        "key-in-config",
        edit(SETTINGS, "    api_key_env: OPENROUTER_API_KEY", "    api_key: fake-or-v1-0123abcd"),
        [],
        "{root}/config/daydream.yaml: endpoints.openrouter: unknown key 'api_key'; allowed: api_key_env, base_url, "
        "base_url_env, batch_api, dialect (a key never goes in this file: put it in an environment variable and name that variable in "
        "api_key_env)",
    ),
    (
        "provider-id-separator",
        edit(SETTINGS, "  embedded:", "  embed__ded:"),
        [],
        "{root}/config/daydream.yaml: provider id 'embed__ded' may not contain '__' (it separates the parts of task "
        "ids); rename it",
    ),
    # ids may not contain the task-id separator
    (
        "concept-id-separator",
        edit(f"{RAW}/concepts_metadata.csv", "tidal-power,", "tidal__power,"),
        [],
        "{root}/data/1_raw/concepts_metadata.csv: line 2: concept_id 'tidal__power' may not contain '__' (it separates "
        "the parts of task ids); rename it",
    ),
    (
        "template-id-separator",
        edit(f"{RAW}/draft_templates.csv", "plain,Plain", "pl__ain,Plain"),
        [],
        "{root}/data/1_raw/draft_templates.csv: line 4: template_id 'pl__ain' may not contain '__' (it separates the "
        "parts of task ids); rename it",
    ),
    (
        "model-id-separator",
        edit(f"{RAW}/llm_models.csv", "free-one,", "free__one,"),
        [],
        "{root}/data/1_raw/llm_models.csv: line 4: id 'free__one' may not contain '__' (it separates the parts of task "
        "ids); rename it",
    ),
    (
        "cohort-name-separator",
        lambda root: None,
        ["--cohort", "pi__lot"],
        "cohort name 'pi__lot' may not contain '__' (it separates the parts of task ids); rename it to something like "
        "'my-id_1'",
    ),
    # every key of a cohort spec
    (
        "spec-replicates-unknown-key",
        write(SPEC, "replicates: {drafts: 2}\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: unknown setting replicates.drafts; remove it (allowed in replicates: draft, "
        "essay, evaluation)",
    ),
    (
        "spec-replicates-fraction",
        write(SPEC, "replicates: {essay: 1.5}\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: replicates.essay must be a whole number >= 1 (found 1.5)",
    ),
    (
        "spec-replicates-not-mapping",
        write(SPEC, "replicates: 2\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: replicates must be a mapping of draft, essay, evaluation (found 2)",
    ),
    (
        "spec-k-above-concepts",
        write(SPEC, "concepts: [tidal-power, sourdough]\nk: 3\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: k must be a whole number from 1 to 2, the number of concepts it combines "
        "(found 3)",
    ),
    (
        "spec-k-word",
        write(SPEC, "k: two\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: k must be a whole number from 1 to 3, the number of concepts it combines "
        "(found 'two')",
    ),
    (
        "spec-settings-k-above-concepts",
        write(SPEC, "concepts: [tidal-power]\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: k must be a whole number from 1 to 1, the number of concepts it combines "
        "(found 2 in config/daydream.yaml)",
    ),
    (
        "spec-combos-and-k",
        write(SPEC, "combos: [combo_v1_000000000000]\nk: 2\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: combos already fix their concepts, k and description level; remove k",
    ),
    (
        "spec-empty-axis",
        write(SPEC, "draft_templates: []\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: draft_templates is empty; list at least one id, or remove the key",
    ),
    (
        "spec-repeated-id",
        write(SPEC, "evaluation_templates: [judge-a, judge-b, judge-a]\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: evaluation_templates lists 'judge-a' more than once; list each id once",
    ),
    (
        "spec-not-a-list",
        write(SPEC, "essay_templates: polish\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: essay_templates must be a list of ids",
    ),
    (
        "spec-curated-with-draft-axes",
        write(SPEC, "essays: [abc123]\ndraft_templates: [ladder]\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: essays makes a curated cohort (those essays with their drafts), so "
        "draft_templates would be ignored; remove it",
    ),
    (
        "spec-bad-level",
        write(SPEC, "description_level: essay\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: description_level 'essay' is not one of sentence, paragraph, article",
    ),
    (
        "spec-not-a-mapping",
        write(SPEC, "- ladder\n- sketch\n"),
        PILOT,
        "{root}/config/cohorts/pilot.yaml: expected a mapping of axes (concepts, k, draft_templates, ...)",
    ),
]


def snapshot(root: Path) -> dict:
    """Every file and folder under data/ with its bytes: bad input must leave all of it as it was."""
    return {p.relative_to(root): p.read_bytes() if p.is_file() else None for p in (root / "data").rglob("*")}


@pytest.mark.parametrize("change,args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message_and_exit_2(project, change, args, expected):
    change(project)
    before = snapshot(project)
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    if expected is None:
        assert (
            lines[0] == f"error: {project}/config/cohorts/pilot.yaml: not valid YAML on line 2 (expected ',' or "
            "']', but got '<stream end>'); fix the syntax"
        )
    else:
        assert lines[0] == "error: " + expected.format(root=project)
    assert snapshot(project) == before
    assert not (project / "data" / "cohorts").exists()


def test_the_table_covers_every_kind_of_bad_input():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_every_problem_in_a_file_is_reported_at_once(project):
    edit(f"{RAW}/draft_templates.csv", "essay_block", "nope")(project)
    edit(f"{RAW}/llm_models.csv", "free,0", "gratis,0")(project)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 2
