"""The earlier Dagster system's data/1_raw loads and runs unchanged: its formats, in fixtures of our own.

Its formats (facts, not texts): booleans in any case; essay templates that name the draft `links_block`; a `copy` essay
template without a file; evaluation templates in `evaluation_templates/<id>.txt` (at the time of its operating guide)
or all templates in `templates/<stage>/` (later); `llm_models.csv` whose `provider` names the model's vendor, with an
extra `specialization` column and no `pool`, every model reached through OpenRouter; files we do not read
(`link_templates.csv`, `generation_templates/links/`). When the earlier system's repository is mirrored on this
machine, its own data/1_raw is copied to a temporary folder and planned too (skipped otherwise); nothing of it is kept.
"""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import daydream

from daydream_luigi.cli import main

MIRROR = Path("/work/.mirror/zby+DayDreamingDayDreaming/repo")
GUIDE_COMMIT = "198b40b"  # the commit whose docs/guides/operating_guide.md the seed guide matches

DRAFT = (
    "Think about these ideas together:\n{% for concept in concepts %}* {{ concept.name }}: {{ concept.content }}\n"
    "{% endfor %}Write notes, one per line.\n"
)
ESSAY = "Turn these notes into a short essay:\n{{ links_block }}\n"
JUDGE = "Rate the originality of this essay.\n{{ response }}\nEnd with SCORE: N\n"
MODELS = (
    "id,model,provider,display_name,for_generation,for_evaluation,specialization\n"
    'writer,vendor-a/writer-model,vendor-a,"Writer",true,false,general\n'
    'critic,vendor-b/critic-model,vendor-b,"Critic",FALSE,TRUE,reasoning\n'
    'spare_f,vendor-c/spare-model:free,vendor-c,"Spare (Free)",false,false,coding\n'
)


def write_earlier_raw(raw: Path, later_layout: bool = False) -> None:
    """A data/1_raw of our own in the earlier system's formats; `later_layout`: template files in templates/<stage>/."""
    shutil.rmtree(raw, ignore_errors=True)
    concepts = {"kelp-forests": "True", "bridge-tolls": "True", "sundials": "True", "moon-dust": "False"}
    (raw / "concepts" / "descriptions-paragraph").mkdir(parents=True)
    (raw / "concepts_metadata.csv").write_text(
        "concept_id,name,active\n" + "".join(f"{c},{c.replace('-', ' ').title()},{a}\n" for c, a in concepts.items())
    )
    for concept in concepts:
        (raw / "concepts" / "descriptions-paragraph" / f"{concept}.txt").write_text(f"A paragraph about {concept}.\n")
    (raw / "draft_templates.csv").write_text(
        "template_id,template_name,description,active,parser\n"
        "notes-v1,Notes V1,Free notes,True,\n"
        "unused-v1,Unused V1,Not active,False,essay_block\n"
    )
    (raw / "essay_templates.csv").write_text(
        "template_id,template_name,description,active,generator\n"
        "from-notes-v1,From notes,Parse the notes; no LLM,true,copy\n"
        "essay-v1,Essay V1,An essay from the links,true,llm\n"
    )
    (raw / "evaluation_templates.csv").write_text(
        "template_id,template_name,description,active,parser\norig-v1,Originality,Scores originality,true,in_last_line\n"
    )
    (raw / "link_templates.csv").write_text("template_id,template_name,description,active,parser\nold,Old,x,false,\n")
    (raw / "llm_models.csv").write_text(MODELS)
    folders = (
        {stage: raw / "templates" / stage for stage in ("draft", "essay", "evaluation")}
        if later_layout
        else {
            "draft": raw / "generation_templates" / "draft",
            "essay": raw / "generation_templates" / "essay",
            "evaluation": raw / "evaluation_templates",
        }
    )
    files = {
        ("draft", "notes-v1"): DRAFT,
        ("draft", "unused-v1"): DRAFT,
        ("essay", "essay-v1"): ESSAY,
        ("evaluation", "orig-v1"): JUDGE,
    }
    for (stage, template_id), text in files.items():
        folders[stage].mkdir(parents=True, exist_ok=True)
        (folders[stage] / f"{template_id}.txt").write_text(text)
    if not later_layout:
        (raw / "generation_templates" / "links").mkdir(parents=True)
        (raw / "generation_templates" / "links" / "old.txt").write_text("{{ concepts }}\n")


def test_the_earlier_systems_inputs_plan_and_run_unchanged(project, endpoint):
    raw = project / "data" / "1_raw"
    write_earlier_raw(raw)
    result = daydream("run", "--workers", "2", "--yes")
    assert result.returncode == 0, result.stderr
    # 3 combos x 1 draft template x 1 writer; x 2 essay templates (the copy calls nothing); x 1 judge template
    assert "done 15, skipped (already complete) 0, failed 0, blocked 0" in result.stdout
    assert endpoint.stats["requests"] == 3 + 3 + 6
    bodies = [r["body"] for r in endpoint.requests if r["path"] == "/v1/chat/completions"]
    assert {b["model"] for b in bodies} == {"vendor-a/writer-model", "vendor-b/critic-model"}
    essays = [b["messages"][-1]["content"] for b in bodies if b["messages"][-1]["content"].startswith("Turn these")]
    assert len(essays) == 3 and all("<essay>" in e for e in essays)  # links_block is the parsed draft
    gens = project / "data" / "gens"
    copies = [d for d in (gens / "essay").iterdir() if json.loads((d / "metadata.json").read_text())["mode"] == "copy"]
    assert len(copies) == 3 and all(not (d / "prompt.txt").exists() for d in copies)
    for directory in (gens / "draft").iterdir():
        call = json.loads((directory / "call.json").read_text())
        assert (call["provider"], call["vendor"]) == ("openrouter", "vendor-a")  # endpoint, and who made the model
    reports = project / "data" / "cohorts" / next(p.name for p in (project / "data" / "cohorts").iterdir()) / "reports"
    with (reports / "parsed_scores.csv").open() as handle:  # and the report's table says who made each model
        vendors = {(row["generation_vendor"], row["evaluation_vendor"]) for row in csv.DictReader(handle)}
    assert vendors == {("vendor-a", "vendor-b")}  # a copy essay's model is its draft's

    # the later layout (templates/<stage>/) plans the same generations, all complete
    write_earlier_raw(raw, later_layout=True)
    again = daydream("run", "--yes")
    assert again.returncode == 0, again.stderr
    assert "done 0, skipped (already complete) 15, failed 0, blocked 0" in again.stdout


def test_a_template_file_in_two_folders_is_one_message(project):
    raw = project / "data" / "1_raw"
    write_earlier_raw(raw)
    (raw / "templates" / "evaluation").mkdir(parents=True)
    (raw / "templates" / "evaluation" / "orig-v1.txt").write_text(JUDGE)
    result = CliRunner().invoke(main, ["plan"])
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {raw / 'evaluation_templates.csv'}: line 2: template 'orig-v1' has a file in more than one folder "
        f"({raw / 'templates' / 'evaluation' / 'orig-v1.txt'}, {raw / 'evaluation_templates' / 'orig-v1.txt'}); "
        f"keep one of them\n",
    )


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"the earlier system's repository is not mirrored at {MIRROR}")
def test_the_earlier_systems_own_data_plans(project, tmp_path):
    """Its data/1_raw as its repository held it at the time of the operating guide, copied to a temporary folder."""
    raw = project / "data" / "1_raw"
    shutil.rmtree(raw)
    archive = subprocess.run(
        ["git", "-C", str(MIRROR), "archive", GUIDE_COMMIT, "data/1_raw"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    # Our shipped neutrality terms name the target; its pool holds a default-mode-network concept whose descriptions
    # say "daydream", and two of its judge rubrics name them too: the preflight stops before anything is planned.
    stopped = CliRunner().invoke(main, ["plan"])
    assert stopped.exit_code == 2
    flagged = {line.split(": line ")[0].removeprefix(f"error: {raw}/") for line in stopped.stderr.splitlines()}
    assert flagged == {
        "evaluation_templates/novelty.txt",
        "evaluation_templates/style-coherence-v3.txt",
        "concepts_metadata.csv",
        "concepts/descriptions-sentence/default-mode-network.txt",
        "concepts/descriptions-paragraph/default-mode-network.txt",
        "concepts/descriptions-article/default-mode-network.txt",
    }
    (project / "config" / "neutrality.yaml").unlink()  # a project without the rules file skips the check
    result = CliRunner().invoke(main, ["plan"])
    assert result.exit_code == 0, result.output
    assert "generations 3150, done 0, to_call 2625" in result.output


def test_a_model_without_a_price_is_unknown_never_zero_and_max_cost_refuses_it(project):
    raw = project / "data" / "1_raw"
    write_earlier_raw(raw)
    plan = CliRunner().invoke(main, ["plan"])
    assert plan.exit_code == 0, plan.output
    assert plan.output.splitlines()[-1] == (
        "total: generations 15, done 0, to_call 12, est_prompt_tokens 7200, est_completion_tokens 5700, "
        "est_cost_usd unknown (12 call(s) of critic, writer have no known price: `daydream prices refresh`, or price "
        "columns in llm_models.csv)"
    )
    assert all(line.split()[-4:-1] == ["unknown"] * 3 for line in plan.output.splitlines()[2:5])
    refused = CliRunner().invoke(main, ["run", "--max-cost", "1"])
    assert (refused.exit_code, refused.stderr.splitlines()[0]) == (
        2,
        "error: --max-cost: model 'critic' has 6 call(s) to make and no known price, so they cannot be held to "
        "--max-cost; run `daydream prices refresh` (OpenRouter models) or give price_prompt_per_mtok and "
        "price_completion_per_mtok in llm_models.csv",
    )
    # prompt and completion priced apart ($3 and $15 per million for the judge), the writer still unknown
    models = raw / "llm_models.csv"
    lines = models.read_text().splitlines()
    lines = [lines[0] + ",price_prompt_per_mtok,price_completion_per_mtok", lines[1] + ",,", lines[2] + ",3,15"]
    models.write_text("\n".join(lines) + "\n")
    plan = CliRunner().invoke(main, ["plan"])
    assert plan.output.splitlines()[-1] == (
        "total: generations 15, done 0, to_call 12, est_prompt_tokens 7200, est_completion_tokens 5700, "
        "est_prompt_cost_usd 0.0126, est_completion_cost_usd 0.027, est_cost_usd 0.0396 + unknown (6 call(s) of "
        "writer have no known price: `daydream prices refresh`, or price columns in llm_models.csv)"
    )


def test_prices_refresh_reads_openrouters_model_list_into_the_cache_and_plan_uses_it(project, monkeypatch):
    from fake_endpoint import FakeEndpoint

    raw = project / "data" / "1_raw"
    write_earlier_raw(raw)
    listed = {  # as OpenRouter lists them: strings of USD per token
        "vendor-a/writer-model": {"prompt": "0.000001", "completion": "0.000005", "request": "0", "image": "0"},
        "vendor-b/critic-model": {"prompt": "0.000003", "completion": "0.000015", "internal_reasoning": "0.000015"},
        "openrouter/auto": {"prompt": "-1", "completion": "-1"},  # a router's price depends on the model it picks
    }
    with FakeEndpoint(listed_prices=listed) as server:
        url = server.base_url
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", url)
        refreshed = CliRunner().invoke(main, ["prices", "refresh"])
    cache = project / "data" / "prices" / "openrouter_models.json"
    assert (refreshed.exit_code, refreshed.output.splitlines()) == (
        0,
        [
            f"prices of 2 models from {url}/models written to {cache}",
            "3 of 3 openrouter models of llm_models.csv have a price",  # the :free one costs nothing
        ],
    )
    kept = json.loads(cache.read_text())
    assert kept["models"] == {
        "vendor-a/writer-model": {"prompt": 1.0, "completion": 5.0, "request": 0.0},
        "vendor-b/critic-model": {"prompt": 3.0, "completion": 15.0, "internal_reasoning": 15.0},
    }
    assert kept["fetched_at"].startswith("20") and kept["source"] == f"{url}/models"
    plan = CliRunner().invoke(main, ["plan"])
    # writer: (1200 + 1800) prompt tokens at $1, (1800 + 2100) completion at $5; critic: 4200 at $3, 1800 at $15
    assert plan.output.splitlines()[-1] == (
        "total: generations 15, done 0, to_call 12, est_prompt_tokens 7200, est_completion_tokens 5700, "
        "est_prompt_cost_usd 0.0156, est_completion_cost_usd 0.0465, est_cost_usd 0.0621"
    )


def test_a_plan_with_nothing_to_run_says_why_and_what_to_change(project, tmp_path):
    write_earlier_raw(project / "data" / "1_raw")
    plan = CliRunner().invoke(main, ["plan", "--backend", "local"])  # its models all go through OpenRouter
    assert (plan.exit_code, plan.output.splitlines()[1:]) == (
        0,
        [
            "nothing to plan: no model of llm_models.csv has for_generation true and runs on the local backend; set "
            "for_generation true on one, or choose --backend http; no model of llm_models.csv has for_evaluation "
            "true and runs on the local backend; set for_evaluation true on one, or choose --backend http"
        ],
    )
    outside = tmp_path / "elsewhere"  # --help outside a project: no Luigi warning about a missing luigi.cfg
    outside.mkdir()
    env = {"DAYDREAM_CONFIG_DIR": str(outside / "config"), "DAYDREAM_DATA_ROOT": str(outside / "data")}
    helped = daydream("--help", cwd=outside, env=env)
    assert (helped.returncode, helped.stderr) == (0, "")
