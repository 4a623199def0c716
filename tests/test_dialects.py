"""Every call carries only what its endpoint's API documents (strict test servers answer anything else with OpenAI's
400); reasoning models' thinking is kept beside the answer and counted; the upstream host is recorded."""

import csv
import json

import pytest
import yaml
from conftest import FAKE_KEY, daydream
from fake_endpoint import REASONING_TEXT, THINKING_TOKENS, FakeEndpoint

from daydream_luigi.providers.chat import CallSettings, request_body

OTHER_KEY = "test-key-of-another-endpoint-0123"
HEADER = "id,model,provider,display_name,for_generation,for_evaluation,endpoint"


def use_endpoint(project, server: FakeEndpoint, dialect: str, model_columns: str = "", model_values: str = "") -> None:
    """Declare the strict server as endpoint `strict` of `dialect` and route the test catalog's two models to it."""
    settings_file = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["endpoints"]["strict"] = {"base_url": server.base_url, "api_key_env": "STRICT_KEY", "dialect": dialect}
    settings_file.write_text(yaml.safe_dump(settings))
    (project / "data" / "1_raw" / "llm_models.csv").write_text(
        f"{HEADER}{model_columns}\n"
        f"gen-paid,vendor/gen-model,vendor,Gen,true,false,strict{model_values}\n"
        f"judge-paid,vendor/judge-model,vendor,Judge,false,true,strict{model_values}\n"
    )


@pytest.mark.parametrize(
    ("dialect", "columns", "values", "sent"),
    [
        ("openai", ",reasoning_effort", ",low", {"max_completion_tokens", "reasoning_effort"}),
        ("openai-compatible", "", "", {"max_tokens"}),
        (
            "openrouter",
            ",reasoning_max_tokens,provider_order,provider_allow_fallbacks",
            ",64,host-a;host-b,false",
            {"max_tokens", "reasoning", "provider"},
        ),
    ],
)
def test_a_cohort_runs_through_a_strict_server_of_each_dialect(project, monkeypatch, dialect, columns, values, sent):
    monkeypatch.setenv("STRICT_KEY", OTHER_KEY)
    with FakeEndpoint(strict=dialect) as server:
        use_endpoint(project, server, dialect, columns, values)
        result = daydream("run", "--workers", "2", "--yes")
        assert result.returncode == 0, result.stderr
        assert "done 42, skipped (already complete) 0, failed 0, blocked 0" in result.stdout
        assert server.rejected_fields == [] and server.stats["faults_served"] == {}
        chats = [r for r in server.requests if r["path"] == "/v1/chat/completions"]
        # the preflight: OpenRouter's GET /key proves the key; elsewhere a 1-token chat does (GET /models does not)
        preflight = [] if dialect == "openrouter" else chats[:1]
        assert [r["body"]["messages"][0]["content"] for r in preflight] == ["Say OK."] * len(preflight)
        assert [r["path"] for r in server.requests if r["path"] != "/v1/chat/completions"] == [
            "/v1/key" if dialect == "openrouter" else "/v1/models"
        ]
        chats = chats[len(preflight) :]
        assert len(chats) == 6 + 6 + 24
        assert {field for r in chats for field in r["body"]} == {"model", "messages", "temperature"} | sent
        assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {OTHER_KEY}"}
        if dialect == "openrouter":
            assert chats[0]["body"]["reasoning"] == {"max_tokens": 64}
            assert chats[0]["body"]["provider"] == {"order": ["host-a", "host-b"], "allow_fallbacks": False}


@pytest.mark.parametrize("dialect", ["openai", "openai-compatible", "openrouter"])
def test_the_strict_server_refuses_what_its_api_does_not_document(dialect):
    """The test server is strict indeed: the field every request carried before (usage) is refused but by OpenRouter,
    max_tokens by OpenAI's reasoning models, OpenRouter's routing by the others; and the client sends none of them."""
    import requests

    with FakeEndpoint(strict=dialect) as server:
        old = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "provider": {}}
        answer = requests.post(f"{server.base_url}/chat/completions", json=old, timeout=10)
        expected = {
            "openai": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            "openai-compatible": "Unrecognized request argument supplied: provider",
            "openrouter": None,
        }[dialect]
        if expected is None:
            assert answer.status_code == 200
        else:
            assert (answer.status_code, answer.json()["error"]["message"]) == (400, expected)
            assert server.stats["faults_served"] == {"rejected_field": 1}
    body = request_body("m", "hi", CallSettings(dialect=dialect, max_tokens=5))
    assert "usage" not in body and ("max_completion_tokens" in body) == (dialect == "openai")


def test_a_reasoning_models_thinking_is_kept_counted_and_its_host_recorded(project, endpoint):
    with FakeEndpoint(reasoning_models=["vendor/gen-model"], served_by="HostA") as server:
        env = {"DAYDREAM_LLM_BASE_URL": server.base_url}
        result = daydream("run", "--workers", "2", "--yes", env=env)
        assert result.returncode == 0, result.stderr
    drafts = list((project / "data" / "gens" / "draft").iterdir())
    assert len(drafts) == 6
    for directory in drafts:
        assert (directory / "reasoning.txt").read_text() == REASONING_TEXT
        assert REASONING_TEXT not in (directory / "raw.txt").read_text()
        call = json.loads((directory / "call.json").read_text())
        meta = json.loads((directory / "metadata.json").read_text())
        for record in (call, meta):
            assert (record["reasoning_tokens"], record["served_by"]) == (THINKING_TOKENS, "HostA")
    judged = json.loads(next((project / "data" / "gens" / "evaluation").iterdir()).joinpath("call.json").read_text())
    assert "reasoning_tokens" not in judged and judged["served_by"] == "HostA"
    reports = next((project / "data" / "cohorts").iterdir()) / "reports"
    with (reports / "parsed_scores.csv").open() as handle:
        assert {row["evaluation_host"] for row in csv.DictReader(handle)} == {"HostA"}
    with (reports / "summary_statistics.csv").open() as handle:
        by_host = [(r["grouping"], r["group"]) for r in csv.DictReader(handle) if "host" in r["grouping"]]
    assert sorted(set(by_host)) == [
        ("evaluation_host", "HostA"),
        ("evaluation_model x evaluation_host", "judge-paid x HostA"),
    ]  # the summary groups by the host that served the judge
    assert FAKE_KEY not in result.stdout + result.stderr


def test_thinking_inside_the_content_is_moved_beside_the_answer(project):
    with FakeEndpoint(think_tag_models=["vendor/gen-model"]) as server:
        result = daydream("run", "--workers", "2", "--yes", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
        assert result.returncode == 0, result.stderr
    for directory in (project / "data" / "gens" / "draft").iterdir():
        assert (directory / "reasoning.txt").read_text() == REASONING_TEXT
        assert not (directory / "raw.txt").read_text().startswith("<think>")


def test_a_draft_that_spent_its_budget_thinking_says_so(project):
    settings_file = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["stages"]["draft"]["max_tokens"] = THINKING_TOKENS
    settings_file.write_text(yaml.safe_dump(settings))
    with FakeEndpoint(reasoning_models=["vendor/gen-model"]) as server:
        result = daydream("run", "--workers", "2", "--yes", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
    assert result.returncode == 1
    directory = next((project / "data" / "gens" / "draft").iterdir())
    error = json.loads((directory / "error.json").read_text())["error"]
    assert error == (
        f"answer truncated at max_tokens={THINKING_TOKENS} after {THINKING_TOKENS} tokens of thinking "
        f"(finish_reason=length): the model spent its budget reasoning; raise max_tokens in config/daydream.yaml or "
        f"cap the thinking with reasoning_max_tokens or reasoning_effort in llm_models.csv, then "
        f"`daydream gens rm {directory.name} --yes` and re-run"
    )
    assert (directory / "reasoning.txt").read_text() == REASONING_TEXT


def llamacpp_endpoint(project, server: FakeEndpoint) -> None:
    """The judge's calls go to a llama.cpp-style server that checks its key on chat requests only."""
    settings_file = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["endpoints"]["llamacpp"] = {"base_url": server.base_url, "api_key_env": "LLAMA_KEY"}
    settings_file.write_text(yaml.safe_dump(settings))
    models = project / "data" / "1_raw" / "llm_models.csv"
    models.write_text(
        models.read_text().replace("judge-paid,vendor/judge-model,openrouter,", "judge-paid,judge,llamacpp,")
    )


def test_a_wrong_key_for_a_llamacpp_style_server_stops_the_run_at_preflight(project, endpoint):
    with FakeEndpoint(require_key=OTHER_KEY, strict="openai-compatible") as server:
        llamacpp_endpoint(project, server)
        result = daydream("run", "--yes", env={"LLAMA_KEY": "wrong-key-0123456789"})
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"error: provider 'llamacpp' at {server.base_url}: the key in LLAMA_KEY was rejected (HTTP 401 to a "
            f"1-token chat completion to 'judge'); check LLAMA_KEY"
        ]
        assert [r["path"] for r in server.requests] == ["/v1/models", "/v1/chat/completions"]
        assert server.stats["faults_served"] == {"unauthorized": 1}
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()

    with FakeEndpoint(require_key=OTHER_KEY, strict="openai-compatible") as server:
        llamacpp_endpoint(project, server)
        result = daydream("run", "--yes", env={"LLAMA_KEY": OTHER_KEY})
        assert result.returncode == 0, result.stderr
        preflight = server.requests[1]["body"]
        assert preflight == {
            "model": "judge",
            "messages": [{"role": "user", "content": "Say OK."}],
            "temperature": 0.0,
            "max_tokens": 1,
        }
        assert server.stats["requests"] == 1 + 24 and server.stats["faults_served"] == {}
    assert "preflight requests 1 (a 1-token chat completion proving the key of llamacpp, before the run)" in (
        result.stdout.splitlines()
    ), result.stdout


def test_check_lists_a_judge_served_by_more_than_one_host(project):
    with FakeEndpoint(served_by="HostA") as server:
        env = {"DAYDREAM_LLM_BASE_URL": server.base_url}
        assert daydream("run", "--stage", "evaluation", "--yes", env=env).returncode == 0
        clean = daydream("check")
        assert (clean.returncode, clean.stdout) == (0, "0 problem(s) found\n")
        evaluations = sorted((project / "data" / "gens" / "evaluation").iterdir())
        for directory in evaluations[:3]:  # as if a later run had been routed elsewhere
            meta = json.loads((directory / "metadata.json").read_text())
            (directory / "metadata.json").write_text(json.dumps({**meta, "served_by": "HostB"}))
        cohort = meta["cohort_id"]
    mixed = daydream("check")
    assert (mixed.returncode, mixed.stdout.splitlines()) == (
        1,
        [
            f"mixed_hosts       evaluation judge-paid  judge judge-paid's evaluations in cohort {cohort} were served "
            f"by 2 hosts (HostA: 21, HostB: 3); pin one with provider_only (or provider_order and "
            f"provider_allow_fallbacks false) in llm_models.csv",
            "1 problem(s) found",
        ],
    )


def test_pools_shows_each_pool_and_resume_lifts_a_quota_pause(project):
    import time

    from click.testing import CliRunner

    from daydream_luigi.cli import main
    from daydream_luigi.core.settings import Paths, load_settings
    from daydream_luigi.providers.limits import gate
    from daydream_luigi.providers.limits.ratelimit import quota_message

    paths = Paths.from_env()
    until = time.time() + 3600
    gate.limiter(paths, load_settings(paths)).pause("free", until, "free-models-per-day")
    shown = CliRunner().invoke(main, ["pools"])
    when = quota_message("free", until, "free-models-per-day").split("resume after ", 1)[1]
    assert (shown.exit_code, [line.split() for line in shown.output.splitlines()]) == (
        0,
        [
            ["pool", "at_once", "rate", "sent_in_window", "sent_today", "paused"],
            ["free", "1", "20/min", "0", "0", "until", *when.split()],
            ["local", "1", "no", "limit", "0", "0", "-"],
            ["paid", "5", "no", "limit", "0", "0", "-"],
        ],
    )
    resumed = CliRunner().invoke(main, ["pools", "resume", "free"])
    assert (resumed.exit_code, resumed.output) == (
        0,
        f"pool free: lifted the pause until {when}; its calls start at the next run\n",
    )
    assert gate.limiter(paths, load_settings(paths)).paused("free") is None
    again = CliRunner().invoke(main, ["pools", "resume", "free"])
    assert again.output == "pool free: not paused, nothing to lift\n"


def test_a_stages_reasoning_setting_is_sent_and_gives_its_drafts_new_gen_ids(project, endpoint):
    from conftest import members_of

    before = {m.gen_id for m in members_of()}
    settings_file = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["stages"]["draft"]["reasoning"] = {"effort": "high", "exclude": True}
    settings_file.write_text(yaml.safe_dump(settings))
    after = members_of()
    drafts = [m for m in after if m.stage == "draft"]
    assert all(m.gen_id not in before for m in drafts)  # what the drafts are asked changed
    assert {m.gen_id for m in after if m.stage == "evaluation"}.isdisjoint(before)  # ... and so their descendants
    result = daydream("run", "--stage", "draft", "--yes")
    assert result.returncode == 0, result.stderr
    bodies = [r["body"] for r in endpoint.requests if r["path"] == "/v1/chat/completions"]
    assert len(bodies) == 6 and all(b["reasoning"] == {"effort": "high", "exclude": True} for b in bodies)

    settings["stages"]["draft"]["reasoning"] = {"effort": "huge", "max_tokens": 0}
    settings_file.write_text(yaml.safe_dump(settings))
    refused = daydream("plan")
    where = project / "config" / "daydream.yaml"
    assert (refused.returncode, refused.stderr.splitlines()) == (
        2,
        [
            f"error: {where}: stages.draft.reasoning.effort must be one of minimal, low, medium, high (found 'huge')",
            f"error: {where}: stages.draft.reasoning.max_tokens must be a whole number >= 1 (found 0)",
            f"error: {where}: stages.draft.reasoning: set effort or max_tokens, not both (OpenRouter takes one)",
        ],
    )
