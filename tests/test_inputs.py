"""Inputs you can trust, beyond the bad-input table: files saved with a byte-order mark, typed settings, pool limits,
the prompt limit, name-only concepts, recorded cohorts by id, the cohort listing, cohort build's checks, the guard
and the budget."""

import math

import pytest
import yaml
from click.testing import CliRunner

from daydream_luigi.cli import main
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import CohortSpec, active_spec, read_essay_list
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.render import RenderError, render
from daydream_luigi.core.settings import Guard, Paths, check_pool_limits, load_settings
from daydream_luigi.store import costs
from daydream_luigi.store import operations as ops
from daydream_luigi.store.cohorts import expand_cohort, known_cohorts, load_spec, new_spec_path
from daydream_luigi.store.files import atomic_write_json
from daydream_luigi.store.membership import load_membership, record_run, write_cohort

POOLS = {"free": 1, "paid": 5, "local": 1}
BOM = "\ufeff"


def problems_of(call) -> list[str]:
    with pytest.raises(InputError) as caught:
        call()
    return caught.value.problems


def edit_settings(paths: Paths, **changes) -> None:
    """Replace top-level settings (a dotted key reaches one level down: stages.draft)."""
    settings = yaml.safe_load(paths.settings_file.read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        target = settings
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    paths.settings_file.write_text(yaml.safe_dump(settings))


# ------------------------------------------------------------------------------------------- files from spreadsheets


def test_files_saved_with_a_byte_order_mark_read_like_any_other(project):
    paths = Paths.from_env()
    for relative in (
        "concepts_metadata.csv",
        "llm_models.csv",
        "draft_templates.csv",
        "essay_templates.csv",
        "evaluation_templates.csv",
        "concepts/descriptions-sentence/ant-foraging.txt",
        "generation_templates/essay/polish.txt",
    ):
        path = paths.raw / relative
        path.write_text(BOM + path.read_text(), encoding="utf-8")
    paths.settings_file.write_text(BOM + paths.settings_file.read_text(), encoding="utf-8")
    (paths.cohort_specs / "pilot.yaml").write_text(BOM + "draft_templates: [ladder]\n", encoding="utf-8")
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    assert sorted(catalog.concepts) == ["ant-foraging", "glaciers", "sourdough", "tidal-power"]
    assert catalog.concepts["ant-foraging"].content("sentence") == "Ants find food by laying and following trails."
    assert catalog.templates["essay"]["polish"].source == "Write an essay from this draft:\n{{ draft_block }}\n"
    assert sorted(catalog.models) == ["free-one", "gen-paid", "judge-paid", "qwen-local"]
    assert load_spec(paths, "pilot", catalog, settings, "http").draft_templates == ["ladder"]


# ------------------------------------------------------------------------------------------------------- settings


def test_every_bad_setting_is_reported_at_once_with_its_key_path(project):
    paths = Paths.from_env()
    edit_settings(
        paths,
        k=0,
        **{
            "stages.draft": {
                "temperature": -0.1,
                "max_tokens": 600,
                "connect_timeout": 10,
                "read_timeout": float("inf"),
                "top_k": 5,
            },
            "retry.backoff_max": "60s",
            "guard.max_cost_usd": True,
        },
    )
    where = paths.settings_file
    assert problems_of(lambda: load_settings(paths)) == [
        f"{where}: k must be a whole number >= 1 (found 0)",
        f"{where}: unknown setting stages.draft.top_k; remove it (allowed in stages.draft: temperature, max_tokens, "
        f"connect_timeout, read_timeout, reasoning)",
        f"{where}: stages.draft.temperature must be a number from 0 to 2 (found -0.1)",
        f"{where}: stages.draft.read_timeout must be a number > 0 (found inf)",
        f"{where}: retry.backoff_max must be a number > 0 (found '60s')",
        f"{where}: guard.max_cost_usd must be a number >= 0 (found true)",
    ]


def test_a_settings_file_from_before_the_new_sections_says_what_to_add(project):
    paths = Paths.from_env()
    settings = yaml.safe_load(paths.settings_file.read_text())
    for key in ("limits", "allow_name_only_concepts", "guard", "endpoints"):
        del settings[key]
    paths.settings_file.write_text(yaml.safe_dump(settings))
    assert problems_of(lambda: load_settings(paths)) == [
        f"{paths.settings_file}: missing setting(s) limits, allow_name_only_concepts, guard, endpoints; add them "
        f"(see the README)"
    ]


def test_the_shipped_settings_are_typed(project):
    settings = load_settings(Paths.from_env())
    assert (settings.k, settings.max_prompt_chars, settings.allow_name_only_concepts) == (2, 50_000, False)
    assert settings.guard == Guard(max_calls=1000, max_cost_usd=10)
    assert sorted(settings.providers) == ["embedded", "openrouter"]
    assert settings.providers["openrouter"].api_key_env == "OPENROUTER_API_KEY"


def test_pool_limits_are_whole_numbers_of_at_least_one():
    assert check_pool_limits({"free": "1", "paid": " 5 "}, "luigi.cfg") == {"free": 1, "paid": 5}
    assert problems_of(
        lambda: check_pool_limits({"a": "5_0", "b": "+5", "c": "", "d": "2.5", "ok": "3"}, "luigi.cfg")
    ) == [
        f"luigi.cfg: [resources] {name} must be a whole number >= 1 (found {value!r}); it is how many calls of pool "
        f"{name!r} may run at once"
        for name, value in (("a", "5_0"), ("b", "+5"), ("c", ""), ("d", "2.5"))
    ]


# ------------------------------------------------------------------------------------------- descriptions, prompts


def test_name_only_concepts_need_the_explicit_setting(project):
    paths = Paths.from_env()
    (paths.raw / "concepts" / "descriptions-sentence" / "ant-foraging.txt").unlink()
    assert len(problems_of(lambda: load_catalog(paths, POOLS))) == 1
    edit_settings(paths, allow_name_only_concepts=True)
    catalog = load_catalog(paths, POOLS)
    assert catalog.concepts["ant-foraging"].content("paragraph") == "Ant foraging"
    assert catalog.draft_concepts(("ant-foraging", "tidal-power"), "sentence") == [
        {"name": "Ant foraging", "content": "Ant foraging"},
        {"name": "Tidal power", "content": "Energy from the rise and fall of the sea."},
    ]


def test_a_rendering_over_the_limit_is_an_error_the_stage_can_name():
    assert render("{{ response }}", max_chars=5, response="12345") == "12345"
    with pytest.raises(RenderError) as caught:
        render("{{ response }}!", max_chars=5, response="12345")
    assert str(caught.value) == (
        "the rendered prompt has 6 characters, more than limits.max_prompt_chars (5) in "
        "config/daydream.yaml; shorten the template or its inputs, or raise the limit"
    )
    with pytest.raises(RenderError, match="^OverflowError: Range too big"):
        render("{% for i in range(10**9) %}{% endfor %}")


def test_a_too_long_draft_prompt_stops_the_cohort_before_anything_is_written(project):
    paths = Paths.from_env()
    edit_settings(paths, **{"limits.max_prompt_chars": 120})
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    problems = problems_of(lambda: expand_cohort(active_spec(catalog, settings, "http"), paths, catalog, settings))
    assert problems == [  # the first combo over the limit; sketch's prompts (names only) are all shorter
        f"{paths.templates_root}/draft/ladder.txt: template 'ladder' failed to render for combo_v1_b62accda497e "
        f"(ant-foraging, sourdough): the rendered prompt has 174 characters, more than limits.max_prompt_chars (120) "
        f"in config/daydream.yaml; shorten the template or its inputs, or raise the limit"
    ]
    assert not paths.cohorts.exists()


# ----------------------------------------------------------------------------------------------- cohorts on disk


def written_active_cohort(paths: Paths, backend: str = "http"):
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    spec = active_spec(catalog, settings, backend)
    members = expand_cohort(spec, paths, catalog, settings)
    write_cohort(paths, spec, members)
    return spec, members


def test_the_active_cohort_id_and_gen_ids_are_stable(project):
    """Pinned: a change to how ids are derived must be deliberate (it makes every generation new)."""
    spec, members = written_active_cohort(Paths.from_env())
    assert spec.cohort_id == "active-08c9d38e"
    assert members[0].gen_id == "8rfmc7xrxdrmuvi7"


def test_a_recorded_cohort_can_be_named_after_a_flag_flip(project):
    paths = Paths.from_env()
    old, members = written_active_cohort(paths)
    csv = paths.raw / "draft_templates.csv"
    csv.write_text(
        csv.read_text().replace(
            'plain,Plain,"A draft template, for tests",false', 'plain,Plain,"A draft template, for tests",true'
        )
    )
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    assert active_spec(catalog, settings, "http").cohort_id != old.cohort_id
    assert old.cohort_id in known_cohorts(paths)
    spec = load_spec(paths, old.cohort_id, catalog, settings, "http")
    assert (spec.recorded, spec.source) == (True, str(paths.cohorts / old.cohort_id / "manifest.json"))
    assert spec.manifest() == old.manifest()
    assert (
        expand_cohort(spec, paths, catalog, settings) == members == list(load_membership(paths, old.cohort_id).values())
    )


def test_a_recorded_cohort_whose_template_is_gone_says_so(project):
    paths = Paths.from_env()
    old, _ = written_active_cohort(paths)
    csv = paths.raw / "draft_templates.csv"
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if not line.startswith("sketch,")) + "\n")
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    manifest = paths.cohorts / old.cohort_id / "manifest.json"
    assert problems_of(lambda: load_spec(paths, old.cohort_id, catalog, settings, "http")) == [
        f"{manifest}: cohort {old.cohort_id} uses draft template 'sketch', which is no longer in draft_templates.csv; "
        f"restore its row to use this cohort"
    ]


def test_every_cohort_on_disk_is_listed_with_its_source_counts_and_last_run(project):
    paths = Paths.from_env()
    active, members = written_active_cohort(paths)
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS, settings)
    (paths.cohort_specs / "pilot.yaml").write_text("draft_templates: [ladder]\n")
    pilot = load_spec(paths, "pilot", catalog, settings, "http")
    write_cohort(paths, pilot, expand_cohort(pilot, paths, catalog, settings))
    write_cohort(
        paths,
        CohortSpec(
            "winners",
            "a list",
            [],
            [],
            [],
            ["judge-a"],
            [],
            ["judge-paid"],
            {"draft": 1, "essay": 1, "evaluation": 1},
            essays=[],
        ),
        [],
    )
    (paths.cohorts / "broken").mkdir()
    first_draft = next(m for m in members if m.stage == "draft" and m.template_id == "ladder")  # in both cohorts
    atomic_write_json(paths.gens / "draft" / first_draft.gen_id / "metadata.json", {"gen_id": first_draft.gen_id})
    record_run(paths, active.cohort_id, "2025-01-02T03:04:05+00:00", "2025-01-02T03:09:00+00:00", {"failed": 0})
    assert ops.list_cohorts(paths).to_dict("records") == [
        {
            "cohort_id": "active-08c9d38e",
            "source": "active flags",
            "drafts": 6,
            "essays": 12,
            "evaluations": 24,
            "complete": 1,
            "last_run": "2025-01-02T03:09:00+00:00",
        },
        {
            "cohort_id": "broken",
            "source": "unknown (manifest.json missing or unreadable); membership.csv missing or unreadable",
            "drafts": 0,
            "essays": 0,
            "evaluations": 0,
            "complete": 0,
            "last_run": "never",
        },
        {
            "cohort_id": "pilot",
            "source": f"spec {paths.cohort_specs / 'pilot.yaml'}",
            "drafts": 3,
            "essays": 6,
            "evaluations": 12,
            "complete": 1,
            "last_run": "never",
        },
        {
            "cohort_id": "winners",
            "source": f"curated list {paths.cohort_specs / 'winners.yaml'} (file removed)",
            "drafts": 0,
            "essays": 0,
            "evaluations": 0,
            "complete": 0,
            "last_run": "never",
        },
    ]


def test_cohort_build_refuses_a_path_and_an_existing_spec_before_writing(project, tmp_path):
    paths = Paths.from_env()
    settings_before = paths.settings_file.read_bytes()
    essays = tmp_path / "list.txt"
    essays.write_text(BOM + "e1\n\n  e2  \n")
    assert read_essay_list(essays) == ["e1", "e2"]
    result = CliRunner().invoke(
        main,
        [
            "cohort",
            "build",
            "../daydream",
            "--from-essays",
            str(essays),
            "--eval-templates",
            "judge-a",
            "--eval-models",
            "judge-paid",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        "error: cohort name '../daydream' may only contain letters, digits, '.', '_' and '-'; "
        "rename it to something like 'my-id_1'\n"
    )
    assert paths.settings_file.read_bytes() == settings_before
    assert not paths.cohorts.exists()
    smoke = paths.cohort_specs / "smoke.yaml"
    assert problems_of(lambda: new_spec_path(paths, "smoke", force=False)) == [
        f"{smoke} already exists; choose another name, or pass --force to replace it"
    ]
    assert new_spec_path(paths, "smoke", force=True) == smoke
    assert new_spec_path(paths, "winners", force=False) == paths.cohort_specs / "winners.yaml"
    (paths.cohorts / "winners").mkdir(parents=True)
    assert problems_of(lambda: new_spec_path(paths, "winners", force=False)) == [
        f"cohort 'winners' is already recorded in {paths.cohorts / 'winners'}; choose another name, or pass --force "
        f"to replace it"
    ]
    assert problems_of(lambda: new_spec_path(paths, "../daydream", force=True)) == [
        "cohort name '../daydream' may only contain letters, digits, '.', '_' and '-'; rename it to something like "
        "'my-id_1'"
    ]


# --------------------------------------------------------------------------------------------- guard and budget

TOTALS = {
    "generations": 42,
    "done": 0,
    "to_call": 36,
    "est_prompt_tokens": 22800,
    "est_completion_tokens": 13200,
    "est_cost_usd": 0.09,
}


@pytest.mark.parametrize(
    "guard,reason",
    [
        (Guard(1000, 10), None),
        (Guard(36, 0.09), None),  # at the thresholds is not above them
        (
            Guard(35, 10),
            "this run makes 36 model call(s) estimated at $0.09, over guard.max_calls (35) in config/daydream.yaml",
        ),
        (
            Guard(1000, 0.05),
            "this run makes 36 model call(s) estimated at $0.09, over guard.max_cost_usd ($0.05) in "
            "config/daydream.yaml",
        ),
        (
            Guard(0, 0),
            "this run makes 36 model call(s) estimated at $0.09, over guard.max_calls (0) and "
            "guard.max_cost_usd ($0.00) in config/daydream.yaml",
        ),
    ],
)
def test_guard_reason(guard, reason):
    assert costs.guard_reason(TOTALS, guard) == reason


def test_a_big_run_starts_only_with_yes_or_a_yes_at_the_terminal():
    guard = Guard(10, 10)
    reason = "this run makes 36 model call(s) estimated at $0.09, over guard.max_calls (10) in config/daydream.yaml"
    questions = []
    costs.check_guard(TOTALS, Guard(1000, 10), yes=False, ask=None)  # small: no question
    costs.check_guard(TOTALS, guard, yes=True, ask=None)
    costs.check_guard(TOTALS, guard, yes=False, ask=lambda q: questions.append(q) or True)
    assert questions == [f"{reason}. Start it?"]
    assert problems_of(lambda: costs.check_guard(TOTALS, guard, yes=False, ask=None)) == [
        f"not started: {reason}; nothing to ask without a terminal: pass --yes to start it, or raise the limits"
    ]
    assert problems_of(lambda: costs.check_guard(TOTALS, guard, yes=False, ask=lambda q: False)) == [
        f"not started: {reason}; you answered no"
    ]


@pytest.mark.parametrize("budget", [-1.0, math.nan, math.inf, -math.inf])
def test_a_budget_is_a_finite_number_of_at_least_zero(budget):
    assert problems_of(lambda: costs.checked_budget(budget)) == [
        f"--budget must be a number of USD >= 0 (found {budget:g}); give e.g. --budget 5"
    ]


def test_valid_budgets_pass_unchanged():
    assert [costs.checked_budget(b) for b in (None, 0.0, 2.5)] == [None, 0.0, 2.5]


def test_a_settings_file_that_still_says_providers_is_read_and_both_sections_are_one_message(project):
    paths = Paths.from_env()
    text = paths.settings_file.read_text()
    assert "\nendpoints:" in text
    paths.settings_file.write_text(text.replace("\nendpoints:", "\nproviders:"))  # the section's earlier name
    settings = load_settings(paths)
    assert sorted(settings.providers) == ["embedded", "openrouter"]
    paths.settings_file.write_text(
        text.replace("\nendpoints:", "\nproviders:").replace(
            "api_key_env: OPENROUTER_API_KEY", "api_key_env: 'sk-or-v1-x'"
        )
    )
    assert problems_of(lambda: load_settings(paths)) == [
        f"{paths.settings_file}: providers.openrouter.api_key_env must be the name of an environment variable "
        f"(letters, digits and _, e.g. OPENROUTER_API_KEY), not its value"
    ]  # its messages name the section the file uses
    paths.settings_file.write_text(text + "providers:\n  other:\n    base_url: http://127.0.0.1:9/v1\n")
    assert problems_of(lambda: load_settings(paths)) == [
        f"{paths.settings_file}: both endpoints: and providers: (its earlier name) are set; keep endpoints: and move "
        f"every entry of providers: into it"
    ]
