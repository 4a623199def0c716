"""plan / check / status / removal over a store made by one real pipeline run, then damaged by hand."""

import csv
import fcntl
import json
import os
import shutil
import time

import pytest
import yaml
from conftest import REPO, daydream, write_raw

from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import active_spec
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import MEMBERSHIP_COLUMNS
from daydream_luigi.core.settings import STAGE_ORDER, Paths, load_settings
from daydream_luigi.store import costs
from daydream_luigi.store import operations as ops
from daydream_luigi.store.cohorts import expand_cohort
from daydream_luigi.store.files import atomic_write_json
from daydream_luigi.store.membership import load_membership
from daydream_luigi.store.operations import Finding

POOLS = {"free": 1, "paid": 5, "local": 1}
MAX_TOKENS = {"draft": 500, "essay": 500, "evaluation": 300}


def pin_max_tokens(config_dir):
    """Plan numbers depend on max_tokens; pin them so an edit of the shipped config cannot move these tests."""
    path = config_dir / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    for stage, value in MAX_TOKENS.items():
        settings["stages"][stage]["max_tokens"] = value
    path.write_text(yaml.safe_dump(settings))


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory, endpoint):
    """One real run of the fixture cohort (through the CLI and the loopback endpoint); tests copy its data."""
    root = tmp_path_factory.mktemp("finished")
    shutil.copytree(REPO / "config", root / "config")
    pin_max_tokens(root / "config")
    write_raw(root / "data" / "1_raw")
    env = {
        "DAYDREAM_DATA_ROOT": str(root / "data"),
        "DAYDREAM_CONFIG_DIR": str(root / "config"),
        "DAYDREAM_LLM_BASE_URL": endpoint.base_url,
        "OPENROUTER_API_KEY": "fake-or-v1-TESTKEY-operations",
    }
    result = daydream("run", env=env, cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "data"


@pytest.fixture
def paths(project):
    pin_max_tokens(project / "config")
    return Paths.from_env()


@pytest.fixture
def store(paths, finished_store):
    """The project with the finished run's generations and cohort in place."""
    shutil.copytree(finished_store / "gens", paths.gens)
    shutil.copytree(finished_store / "cohorts", paths.cohorts)
    shutil.copy(finished_store / "combo_mappings.csv", paths.combo_mappings)
    return paths


def catalog_of(paths):
    return load_catalog(paths, POOLS)


def cohort_id(paths):
    (folder,) = paths.cohorts.iterdir()
    return folder.name


def members_of(paths):
    return load_membership(paths, cohort_id(paths))


def lineage(paths):
    """The first draft (by gen_id) with its essays by template and their evaluations by template."""
    members = list(members_of(paths).values())
    draft = min(m.gen_id for m in members if m.stage == "draft")
    essays = {m.template_id: m.gen_id for m in members if m.stage == "essay" and m.parent_gen_id == draft}
    evaluations = {
        (template, m.template_id): m.gen_id
        for template, essay in essays.items()
        for m in members
        if m.stage == "evaluation" and m.parent_gen_id == essay
    }
    return draft, essays, evaluations


def gen(paths, stage, gen_id):
    return paths.gens / stage / gen_id


def rows(frame):
    return frame.to_dict("records")


# ---------------------------------------------------------------------------------------------------------- plan


PRICES = {"gen-paid": 1.5, "judge-paid": 3}  # price_per_mtok of the test catalog: prompt and completion alike


def plan_row(stage, model, generations, done, to_call, prompt, completion, cost):
    return {
        "stage": stage,
        "llm_model_id": model,
        "pool": "paid",
        "batched": False,
        "generations": generations,
        "done": done,
        "to_call": to_call,
        "est_prompt_tokens": prompt,
        "est_completion_tokens": completion,
        "est_prompt_cost_usd": pytest.approx(prompt / 1e6 * PRICES[model]),
        "est_completion_cost_usd": pytest.approx(completion / 1e6 * PRICES[model]),
        "est_cost_usd": pytest.approx(cost),
    }


def test_plan_before_any_run_costs_every_call_but_not_copy_essays_or_kept_answers(paths):
    settings = load_settings(paths)
    catalog = catalog_of(paths)
    members = expand_cohort(active_spec(catalog, settings, "http"), paths, catalog, settings)
    frame = costs.plan(paths, catalog, members)
    # drafts: 6 x (400 + 500) tokens at $1.5/Mtok; essays: only the 6 llm ones call, 6 x (600 + 500) at $1.5;
    # evaluations: 24 x (700 + 300) at $3 (judge-paid)
    assert rows(frame) == [
        plan_row("draft", "gen-paid", 6, 0, 6, 2400, 3000, 0.0081),
        plan_row("essay", "gen-paid", 12, 0, 6, 3600, 3000, 0.0099),
        plan_row("evaluation", "judge-paid", 24, 0, 24, 16800, 7200, 0.072),
    ]
    assert costs.plan_total(frame) == {
        "generations": 42,
        "done": 0,
        "to_call": 36,
        "est_prompt_tokens": 22800,
        "est_completion_tokens": 13200,
        "est_cost_usd": pytest.approx(0.09),
    }

    draft = next(m for m in members if m.stage == "draft")
    essay = next(m for m in members if m.stage == "essay" and m.template_id == "polish")
    (gen(paths, "draft", draft.gen_id)).mkdir(parents=True)
    (gen(paths, "draft", draft.gen_id) / "raw.txt").write_text("kept answer\n")
    (gen(paths, "draft", draft.gen_id) / "call.json").write_text("{}\n")
    (gen(paths, "essay", essay.gen_id)).mkdir(parents=True)
    (gen(paths, "essay", essay.gen_id) / "raw.txt").write_text("no call record, so it is called again\n")
    frame = costs.plan(paths, catalog, members)
    assert rows(frame)[:2] == [
        plan_row("draft", "gen-paid", 6, 0, 5, 2000, 2500, 0.00675),
        plan_row("essay", "gen-paid", 12, 0, 6, 3600, 3000, 0.0099),
    ]


def test_budget_refuses_an_estimate_over_it(paths):
    settings = load_settings(paths)
    catalog = catalog_of(paths)
    frame = costs.plan(paths, catalog, expand_cohort(active_spec(catalog, settings, "http"), paths, catalog, settings))
    with pytest.raises(InputError) as caught:
        costs.check_budget(frame, 0.05)
    assert caught.value.problems == [
        "estimated cost $0.0900 exceeds --budget $0.05; lower the cohort size or raise the budget"
    ]
    assert costs.check_budget(frame, 0.09) == pytest.approx(0.09)
    assert costs.check_budget(frame, 5) == pytest.approx(0.09)


def test_plan_after_the_run_calls_nothing_and_a_lost_metadata_reuses_the_kept_answer(store):
    catalog = catalog_of(store)
    members = members_of(store)
    assert rows(costs.plan(store, catalog, members)) == [
        plan_row("draft", "gen-paid", 6, 6, 0, 0, 0, 0),
        plan_row("essay", "gen-paid", 12, 12, 0, 0, 0, 0),
        plan_row("evaluation", "judge-paid", 24, 24, 0, 0, 0, 0),
    ]
    draft, essays, evaluations = lineage(store)
    (gen(store, "draft", draft) / "metadata.json").unlink()
    shutil.rmtree(gen(store, "evaluation", evaluations["polish", "judge-a"]))
    assert rows(costs.plan(store, catalog, members)) == [
        plan_row("draft", "gen-paid", 6, 5, 0, 0, 0, 0),
        plan_row("essay", "gen-paid", 12, 12, 0, 0, 0, 0),
        plan_row("evaluation", "judge-paid", 24, 23, 1, 700, 300, 0.003),
    ]


def test_plan_names_a_model_missing_from_the_catalog(store):
    catalog = catalog_of(store)
    del catalog.models["judge-paid"]
    with pytest.raises(InputError, match="the cohort uses model 'judge-paid', which is not in llm_models.csv"):
        costs.plan(store, catalog, members_of(store))


# --------------------------------------------------------------------------------------------------------- check


def test_a_finished_run_has_no_findings(store):
    assert ops.check(store, catalog_of(store)) == []


def test_lost_draft_metadata_is_incomplete_and_its_essays_miss_their_parent(store):
    draft, essays, _ = lineage(store)
    (gen(store, "draft", draft) / "metadata.json").unlink()
    atomic_write_json(gen(store, "draft", draft) / "error.json", {"error": "disk full"})
    assert ops.check(store, catalog_of(store)) == [
        Finding(
            "incomplete",
            "draft",
            draft,
            "no metadata.json; raw.txt and call.json kept (a re-run reuses them, no new call); last error: disk full",
        ),
        *sorted(
            [
                Finding(
                    "missing_parent", "essay", essays["polish"], f"parent draft {draft} has no complete generation"
                ),
                Finding(
                    "missing_parent", "essay", essays["verbatim"], f"parent draft {draft} has no complete generation"
                ),
            ],
            key=Finding.sort_key,
        ),
    ]


def test_a_dir_without_an_answer_is_listed_as_unanswered_and_one_with_an_error_as_incomplete(store):
    (gen(store, "essay", "partial0000000001")).mkdir()
    (gen(store, "essay", "partial0000000002")).mkdir()
    atomic_write_json(gen(store, "essay", "partial0000000002") / "error.json", {"error": "HTTP 400"})
    assert ops.check(store, catalog_of(store)) == [
        Finding("incomplete", "essay", "partial0000000002", "no metadata.json; no raw.txt; last error: HTTP 400"),
        Finding(
            "unanswered",
            "essay",
            "partial0000000001",
            "no answer yet (its call was stopped, killed or never made); the next run makes it",
        ),
    ]


def test_a_copied_generation_is_a_duplicate_and_an_orphan(store):
    _, _, evaluations = lineage(store)
    original = evaluations["polish", "judge-b"]
    shutil.copytree(gen(store, "evaluation", original), gen(store, "evaluation", "copy0000000000001"))
    task_id = json.loads((gen(store, "evaluation", original) / "metadata.json").read_text())["task_id"]
    assert ops.check(store, catalog_of(store)) == sorted(
        [
            Finding(
                "duplicate",
                "evaluation",
                original,
                f"task_id {task_id} replicate 1 is also complete as copy0000000000001",
            ),
            Finding(
                "duplicate",
                "evaluation",
                "copy0000000000001",
                f"task_id {task_id} replicate 1 is also complete as {original}",
            ),
            Finding(
                "orphan",
                "evaluation",
                "copy0000000000001",
                f"complete but in no cohort membership under {store.cohorts}",
            ),
        ],
        key=Finding.sort_key,
    )


def test_essays_of_two_draft_replicates_are_not_duplicates(store):
    """An essay's task_id names its draft's task, not the draft replicate; only the parent tells them apart."""
    draft, essays, _ = lineage(store)
    copy = gen(store, "essay", "replica0000000002")
    shutil.copytree(gen(store, "essay", essays["polish"]), copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["parent_gen_id"] = "otherdraft000002"
    atomic_write_json(copy / "metadata.json", meta)
    assert [(f.kind, f.gen_id) for f in ops.check(store, catalog_of(store))] == [
        ("missing_parent", "replica0000000002"),
        ("orphan", "replica0000000002"),
    ]


def test_an_edited_template_flags_every_generation_made_with_it(store):
    template = store.templates_root / "evaluation" / "judge-b.txt"
    template.write_text(template.read_text() + "Be strict.\n")
    catalog = catalog_of(store)
    judged = sorted(m.gen_id for m in members_of(store).values() if m.template_id == "judge-b")
    findings = ops.check(store, catalog)
    assert len(judged) == 12
    assert [(f.kind, f.stage, f.gen_id) for f in findings] == [("template_changed", "evaluation", g) for g in judged]
    current = catalog.templates["evaluation"]["judge-b"].sha256
    assert findings[0].detail.startswith(f"template judge-b is now sha256 {current[:12]}, this generation used ")
    assert findings[0].detail.endswith(f"({template})")


def test_a_template_dropped_from_the_catalog_is_unknown(store):
    catalog = catalog_of(store)
    del catalog.templates["essay"]["verbatim"]
    copies = sorted(m.gen_id for m in members_of(store).values() if m.template_id == "verbatim")
    assert ops.check(store, catalog) == [
        Finding("unknown_template", "essay", g, "template 'verbatim' is not in the essay template catalog")
        for g in copies
    ]


def test_garbage_metadata_is_corrupt_and_nothing_else(store):
    draft, _, _ = lineage(store)
    (gen(store, "draft", draft) / "metadata.json").write_text("{not json")
    assert ops.check(store, catalog_of(store)) == [
        Finding(
            "corrupt",
            "draft",
            draft,
            "metadata.json is not valid JSON (Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1))",
        )
    ]


def test_check_reads_20000_generations_quickly(paths):
    """One scandir per stage and one read per metadata.json: 20,000 generations well under the time a user waits."""
    catalog = catalog_of(paths)
    sha = {
        stage: catalog.templates[stage][tid].sha256
        for stage, tid in [("draft", "ladder"), ("essay", "polish"), ("evaluation", "judge-a")]
    }
    tid = {"draft": "ladder", "essay": "polish", "evaluation": "judge-a"}
    members = []
    for d in range(2000):
        members.append(("draft", f"d{d:015d}", ""))
        for e in range(3):
            members.append(("essay", f"e{d:012d}{e:03d}", f"d{d:015d}"))
            for v in range(2):
                members.append(("evaluation", f"v{d:010d}{e:03d}{v:02d}", f"e{d:012d}{e:03d}"))
    assert len(members) == 20000
    for stage, gid, parent in members:
        directory = gen(paths, stage, gid)
        directory.mkdir(parents=True)
        (directory / "metadata.json").write_text(
            json.dumps(
                {
                    "stage": stage,
                    "gen_id": gid,
                    "parent_gen_id": parent,
                    "template_id": tid[stage],
                    "template_sha256": sha[stage],
                    "task_id": gid,
                    "replicate": 1,
                }
            )
        )
    (paths.cohorts / "big").mkdir(parents=True)
    with (paths.cohorts / "big" / "membership.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MEMBERSHIP_COLUMNS)
        writer.writerows([stage, gid, "big", parent, "c", tid[stage], "m", 1] for stage, gid, parent in members)
    started = time.perf_counter()
    findings = ops.check(paths, catalog)
    elapsed = time.perf_counter() - started
    print(f"check on 20,000 generations: {elapsed:.2f} s")
    assert findings == []
    assert elapsed < 10, f"check took {elapsed:.1f} s on 20,000 generations"


# -------------------------------------------------------------------------------------------------------- status


def test_status_counts_done_failed_and_pending(store):
    members = members_of(store)
    assert rows(ops.status(store, members)) == [
        {"stage": "draft", "total": 6, "done": 6, "failed": 0, "pending": 0},
        {"stage": "essay", "total": 12, "done": 12, "failed": 0, "pending": 0},
        {"stage": "evaluation", "total": 24, "done": 24, "failed": 0, "pending": 0},
    ]
    _, essays, evaluations = lineage(store)
    (gen(store, "essay", essays["polish"]) / "metadata.json").unlink()
    atomic_write_json(gen(store, "essay", essays["polish"]) / "error.json", {"error": "empty essay"})
    shutil.rmtree(gen(store, "evaluation", evaluations["verbatim", "judge-a"]))
    (gen(store, "evaluation", evaluations["verbatim", "judge-b"]) / "metadata.json").unlink()
    assert rows(ops.status(store, list(members.values()))) == [
        {"stage": "draft", "total": 6, "done": 6, "failed": 0, "pending": 0},
        {"stage": "essay", "total": 12, "done": 11, "failed": 1, "pending": 0},
        {"stage": "evaluation", "total": 24, "done": 22, "failed": 0, "pending": 2},
    ]


# ------------------------------------------------------------------------------------------------------- removal


def test_removing_a_draft_takes_its_essays_and_their_evaluations(store):
    draft, essays, evaluations = lineage(store)
    items = ops.removal_set(store, gen_ids=[draft])
    assert items == [
        ("draft", draft),
        *sorted(("essay", g) for g in essays.values()),
        *sorted(("evaluation", g) for g in evaluations.values()),
    ]
    assert len(items) == 1 + 2 + 4
    assert ops.remove(store, items) == 7
    assert not any(gen(store, stage, g).exists() for stage, g in items)
    assert ops.check(store, catalog_of(store)) == []
    assert rows(ops.status(store, members_of(store)))[0] == {
        "stage": "draft",
        "total": 6,
        "done": 5,
        "failed": 0,
        "pending": 1,
    }
    assert ops.remove(store, items) == 0


def test_removing_by_gen_id_accepts_one_id_of_any_stage(store):
    _, essays, evaluations = lineage(store)
    assert ops.removal_set(store, gen_ids=essays["polish"]) == [
        ("essay", essays["polish"]),
        *sorted(("evaluation", evaluations["polish", t]) for t in ("judge-a", "judge-b")),
    ]
    assert ops.removal_set(store, gen_ids=[evaluations["polish", "judge-a"]]) == [
        ("evaluation", evaluations["polish", "judge-a"])
    ]


def test_removal_reaches_partial_children_through_the_cohort(store):
    """A partial essay of a removed draft would otherwise reuse its kept answer to the old draft."""
    draft, essays, evaluations = lineage(store)
    (gen(store, "essay", essays["polish"]) / "metadata.json").unlink()
    items = ops.removal_set(store, gen_ids=[draft])
    assert ("essay", essays["polish"]) in items
    assert ("evaluation", evaluations["polish", "judge-a"]) in items and len(items) == 7


def test_removing_by_template_stage_and_cohort(store):
    members = list(members_of(store).values())
    copies = {("essay", m.gen_id) for m in members if m.template_id == "verbatim"}
    judged_copies = {("evaluation", m.gen_id) for m in members if ("essay", m.parent_gen_id) in copies}
    assert len(copies) == 6 and len(judged_copies) == 12
    assert ops.removal_set(store, template_id="verbatim") == sorted(copies) + sorted(judged_copies)
    assert ops.removal_set(store, template_id="judge-a") == sorted(
        ("evaluation", m.gen_id) for m in members if m.template_id == "judge-a"
    )
    assert ops.removal_set(store, template_id="verbatim", stage="evaluation") == []
    everything = sorted(((m.stage, m.gen_id) for m in members), key=lambda k: (STAGE_ORDER[k[0]], k[1]))
    assert ops.removal_set(store, cohort_id=cohort_id(store)) == everything
    assert ops.removal_set(store, cohort_id=cohort_id(store), stage="draft") == everything
    assert ops.removal_set(store, stage="evaluation") == sorted(
        ("evaluation", m.gen_id) for m in members if m.stage == "evaluation"
    )
    shutil.copytree(gen(store, "draft", members[0].gen_id), gen(store, "draft", "stray000000000001"))
    assert ops.removal_set(store, gen_ids=["stray000000000001"], cohort_id=cohort_id(store)) == []
    assert ops.removal_set(store, gen_ids=["stray000000000001"]) == [("draft", "stray000000000001")]


def test_removal_rejects_unknown_ids_and_an_empty_selection(store):
    with pytest.raises(InputError) as caught:
        ops.removal_set(store, gen_ids=["nosuchgen0000001", "nosuchgen0000002"])
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "unknown gen_id 'nosuchgen0000001'",
        "unknown gen_id 'nosuchgen0000002'",
    ]
    with pytest.raises(InputError, match="gen_id '../x' may only contain"):
        ops.removal_set(store, gen_ids=["../x"])
    with pytest.raises(InputError, match="name what to remove"):
        ops.removal_set(store)
    with pytest.raises(InputError, match="unknown stage 'essays'"):
        ops.removal_set(store, stage="essays")
    with pytest.raises(InputError, match="cohort 'nope' has no membership"):
        ops.removal_set(store, cohort_id="nope")


def test_remove_refuses_a_generation_a_run_is_working_on(store):
    _, _, evaluations = lineage(store)
    directory = gen(store, "evaluation", evaluations["polish", "judge-a"])
    with open(directory / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(InputError, match="is being generated by a running `daydream run`"):
            ops.remove(store, [("evaluation", directory.name)])
    assert (directory / "metadata.json").exists()
    assert ops.remove(store, [("evaluation", directory.name)]) == 1
    assert not os.path.exists(directory)
