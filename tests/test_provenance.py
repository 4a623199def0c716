"""Provenance of reused work: a generation's id covers everything that shapes its call, so an edited template, concept
description, model string or sampling setting makes new generations (counted by `plan`, made by `run`) and never
reuses an answer given for other inputs; the old generations stay for the cohorts that made them."""

import re

import yaml
from conftest import daydream, members_of

MODEL_CALLS = 6 + 6 + 24


def to_call(plan_stdout: str) -> dict:
    """stage -> calls still to make, from `daydream plan`."""
    counts = {}
    for line in plan_stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in ("draft", "essay", "evaluation"):
            counts[fields[0]] = counts.get(fields[0], 0) + int(fields[5])
    return counts


def test_an_edited_judge_template_makes_new_evaluations_only(project, endpoint):
    assert daydream("run").returncode == 0 and endpoint.stats["requests"] == MODEL_CALLS
    before = {m.gen_id for m in members_of()}
    judge = project / "data" / "1_raw" / "generation_templates" / "evaluation" / "judge-a.txt"
    judge.write_text(judge.read_text().replace("Judge this:", "Judge this essay strictly:"))
    plan = daydream("plan")
    assert plan.returncode == 0, plan.stderr
    assert to_call(plan.stdout) == {"draft": 0, "essay": 0, "evaluation": 12}
    assert re.search(r"est_cost_usd 0\.0\d+", plan.stdout)
    after = {m.gen_id for m in members_of()}
    assert len(after - before) == 12 and len(before - after) == 12  # 12 judge-a evaluations renamed, nothing else
    result = daydream("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert endpoint.stats["requests"] == MODEL_CALLS + 12
    assert "done 12, skipped (already complete) 30" in result.stdout
    evaluations = list((project / "data" / "gens" / "evaluation").iterdir())
    assert len(evaluations) == 24 + 12  # the old judgments are kept


def test_an_edited_concept_description_redoes_what_it_reaches(project, endpoint):
    assert daydream("run").returncode == 0
    description = project / "data" / "1_raw" / "concepts" / "descriptions-paragraph" / "tidal-power.txt"
    description.write_text("Barrages hold the tide back and let it through turbines on the ebb.\n")
    # tidal-power is in 2 of the 3 combos; only the ladder template puts descriptions in its prompt (sketch names the
    # concepts only, so its prompts, and its drafts, are unchanged): 2 drafts, their 2 llm essays, 2 x 4 evaluations
    assert to_call(daydream("plan").stdout) == {"draft": 2, "essay": 2, "evaluation": 8}
    assert daydream("run").returncode == 0
    assert endpoint.stats["requests"] == MODEL_CALLS + 2 + 2 + 8


def test_a_changed_sampling_setting_or_model_string_redoes_that_stage(project, endpoint):
    assert daydream("run").returncode == 0
    settings = project / "config" / "daydream.yaml"
    data = yaml.safe_load(settings.read_text())
    data["stages"]["essay"]["temperature"] = 0.9
    settings.write_text(yaml.safe_dump(data))
    assert to_call(daydream("plan").stdout) == {"draft": 0, "essay": 6, "evaluation": 12}  # llm essays and theirs
    models = project / "data" / "1_raw" / "llm_models.csv"
    models.write_text(models.read_text().replace("vendor/judge-model", "vendor/judge-model-v2"))
    assert to_call(daydream("plan").stdout) == {"draft": 0, "essay": 6, "evaluation": 24}


def test_ids_with_the_task_separator_cannot_collide(project):
    """`free__notes` + `gpt` vs `free` + `notes__gpt` joined the same task id; ids may not contain `__` now, and the
    identity itself is structured, not joined."""
    from daydream_luigi.core.identity import _id

    assert _id("draft", 1, {"template": "free__notes", "model": "gpt"}) != _id(
        "draft", 1, {"template": "free", "model": "notes__gpt"}
    )


def test_a_kept_answer_is_never_reused_for_another_prompt(project, endpoint):
    assert daydream("run", "--stage", "draft").returncode == 0
    draft = next(m for m in members_of() if m.stage == "draft")
    folder = project / "data" / "gens" / "draft" / draft.gen_id
    (folder / "metadata.json").unlink()  # as if it had been killed after its answer was kept
    (folder / "prompt.txt").write_text("a prompt this answer was not given for\n")
    result = daydream("run", "--stage", "draft")
    assert result.returncode == 1
    assert (
        f"  failed draft {draft.gen_id}: the kept answer in {folder} was given for another prompt than this "
        f"generation's now; remove it with `daydream gens rm {draft.gen_id} --yes` and re-run"
    ) in result.stdout
    assert endpoint.stats["requests"] == 6


def _first_ids(backend: str) -> dict:
    """stage -> the first gen_id of that stage in the active cohort of `backend` (of an essay the model writes), plus
    one pairwise judgment."""
    from daydream_luigi.core.catalog import load_catalog
    from daydream_luigi.core.cohort_spec import active_spec
    from daydream_luigi.core.settings import Paths, load_settings
    from daydream_luigi.execution import pairwise
    from daydream_luigi.execution.generation import Context
    from daydream_luigi.store.cohorts import expand_cohort

    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, {"free": 1, "paid": 5, "local": 1}, settings)
    spec = active_spec(catalog, settings, backend)
    members = expand_cohort(spec, paths, catalog, settings)
    ids = {stage: next(m.gen_id for m in members if m.stage == stage) for stage in ("draft", "evaluation")}
    ids["essay"] = next(m.gen_id for m in members if m.template_id == "polish")  # written by the model, not copied
    context = Context(paths, settings, catalog, {combo.combo_id: combo for combo in spec.combos})
    template = next(iter(catalog.templates["evaluation"].values()))  # any template: only its sha256 counts here
    essays = {"a": "The first essay.\n", "b": "The second essay.\n"}
    judge = pairwise.judge_for(context, spec.cohort_id, template, catalog.models[spec.evaluation_models[0]], essays)
    ids["pairwise"] = judge.judgment("a", "b").gen_id
    return ids


def test_gen_ids_are_pinned_for_each_backend(project):
    """The ids of work already on disk: a refactoring that changes what a call shape hashes would orphan every kept
    generation (the offline backend adds its sampling, grammars and system prompt to the shape)."""
    assert _first_ids("http") == {
        "draft": "8rfmc7xrxdrmuvi7",
        "essay": "gfrafwomimtqhpln",
        "evaluation": "0q2lmwhq3ga4exmw",
        "pairwise": "nfnr9w1vdex9rjyw",
    }
    assert _first_ids("local") == {
        "draft": "xcawipyinl8054eg",
        "essay": "jq0zet9bfqclwiwn",
        "evaluation": "bk4qy3hz4b1aki5i",
        "pairwise": "q3v1ejddpckhhtzk",
    }
