"""Provider faults: a 220-generation cohort through random transient faults, and the scripted failure cases.

Everything goes through the real CLI, real Luigi and a real loopback HTTP endpoint. Model calls are counted at the
endpoint and tied to their generation through the prompt text, so "no generation paid twice" is measured, not assumed.
"""

import csv
import json
import re
from collections import Counter
from pathlib import Path

import yaml
from conftest import daydream
from fake_endpoint import FakeEndpoint, draft_answer, judge_answer

MODELS = {"gen-paid": "vendor/gen-model", "judge-paid": "vendor/judge-model", "free-one": "vendor/free:free"}
OUTPUTS = {"prompt.txt", "attempts.jsonl", "raw.txt", "call.json", "parsed.txt", "metadata.json", "error.json"}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def fast_retries(project: Path, max_attempts: int = 8) -> None:
    """Retry quickly in this throwaway project: tiny backoff, `max_attempts` attempts, and no pool rates (the shipped
    free pool's 20 requests a minute would hold 80 free calls for 4 minutes)."""
    path = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["retry"].update(max_attempts=max_attempts, backoff_base=0.01, backoff_max=0.05)
    settings["pools"] = {}
    path.write_text(yaml.safe_dump(settings))


def grow_to_220(project: Path) -> None:
    """5 active concepts -> 10 combos x 2 draft templates = 20 drafts, 40 essays, x 2 templates x 2 judges = 160."""
    raw = project / "data" / "1_raw"
    edit(raw / "concepts_metadata.csv", "glaciers,Glaciers,false", "glaciers,Glaciers,true")
    with (raw / "concepts_metadata.csv").open("a") as handle:
        handle.write("tea-ceremony,Tea ceremony,true\n")
    (raw / "concepts" / "descriptions-sentence" / "tea-ceremony.txt").write_text("A slow ritual of whisked tea.\n")
    edit(raw / "llm_models.csv", "Free,false,false,free", "Free,false,true,free")  # a second judge


def membership(project: Path) -> list[dict]:
    [folder] = list((project / "data" / "cohorts").iterdir())
    with (folder / "membership.csv").open() as handle:
        return list(csv.DictReader(handle))


def expected_answer(prompt: str) -> str:
    return judge_answer(prompt) if re.search(r"\bSCORE\b", prompt) else draft_answer(prompt)


def read_generation(directory: Path) -> dict:
    """The files of one generation, checked for corruption: known names only, JSON that parses, outputs in order."""
    files = {}
    for path in directory.iterdir():
        if path.name == ".lock":
            continue
        assert not path.name.startswith("."), f"leftover temp file {path}"
        assert path.name in OUTPUTS, f"unexpected file {path}"
        text = path.read_text(encoding="utf-8")
        files[path.name] = (
            json.loads(text)
            if path.suffix == ".json"
            else [json.loads(line) for line in text.splitlines()]
            if path.suffix == ".jsonl"
            else text
        )
    if "metadata.json" in files:
        assert {"prompt.txt", "raw.txt", "parsed.txt"} <= set(files) and "error.json" not in files, directory
        assert files["metadata.json"]["gen_id"] == directory.name
    if "call.json" in files:
        assert "raw.txt" in files and "prompt.txt" in files, directory
    return files


def calls_sent(server: FakeEndpoint) -> Counter:
    """(model string, prompt) -> requests the endpoint received; two judges get the same prompt, so both are needed."""
    return Counter(
        (r["body"]["model"], r["body"]["messages"][-1]["content"])
        for r in server.requests
        if r["path"].endswith("/chat/completions")
    )


def test_220_generations_through_random_faults(project, monkeypatch):
    grow_to_220(project)
    fast_retries(project)
    with FakeEndpoint(fault_rate=0.2, seed=20240607) as server:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", server.base_url)
        result = daydream("run")
        stats, sent = server.stats, calls_sent(server)

    rows = membership(project)
    assert Counter(r["stage"] for r in rows) == {"draft": 20, "essay": 40, "evaluation": 160}
    assert stats["faults_served"] and sum(stats["faults_served"].values()) >= 20  # the faults really happened
    assert result.returncode in (0, 1), result.stdout + result.stderr

    gens = project / "data" / "gens"
    complete, failed, calls_needed, attempts_total = set(), {}, 0, 0
    call_owner = {}
    for row in rows:
        directory = gens / row["stage"] / row["gen_id"]
        files = read_generation(directory) if directory.exists() else {}
        if "metadata.json" in files:
            complete.add(row["gen_id"])
        elif "error.json" in files:
            assert files["error.json"]["error"].strip(), directory
            failed[row["gen_id"]] = files["error.json"]["error"]
        else:  # only a descendant of a failed generation may be left without either file, and it must be listed
            assert f"  blocked {row['stage']} {row['gen_id']}: " in result.stdout, row
        if "prompt.txt" in files and (row["stage"] != "essay" or row["template_id"] == "polish"):
            call = (MODELS[row["llm_model_id"]], files["prompt.txt"])
            assert call not in call_owner, "two generations make the same call"
            call_owner[call] = row["gen_id"]
            calls_needed += "call.json" in files
            attempts = files["attempts.jsonl"]
            outcomes = [a["outcome"] for a in attempts if a["event"] != "sent"]
            # every request the generation recorded is one the endpoint saw, and the reverse; each has its outcome
            assert sum(a["event"] == "sent" for a in attempts) == len(outcomes) == sent[call], (row, attempts)
            attempts_total += len(outcomes)
            if "call.json" in files:  # a kept answer is the endpoint's real answer, never a fault's payload
                assert outcomes[-1] == "ok" and "ok" not in outcomes[:-1]
                assert files["raw.txt"] == expected_answer(files["prompt.txt"])
            else:
                assert "ok" not in outcomes
    assert sum(sent.values()) == attempts_total == stats["requests"]
    assert set(sent) <= set(call_owner)

    # no generation paid twice: successful answers served == generations that needed a call and kept one
    assert stats["completed_ok"] == calls_needed
    assert f"requests sent {stats['requests']}, answers received {calls_needed}," in result.stdout
    if result.returncode == 0:
        assert len(complete) == 220 and calls_needed == 20 + 20 + 160
        assert "done 220, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    else:
        assert failed
        for gen_id, reason in failed.items():
            assert re.search(rf"^  failed \w+ {gen_id}: {re.escape(reason)}$", result.stdout, re.M)


def test_truncated_draft_fails_with_raw_kept_and_its_descendants_are_blocked(project, endpoint):
    max_tokens = yaml.safe_load((project / "config" / "daydream.yaml").read_text())["stages"]["draft"]["max_tokens"]
    endpoint.script("length")  # the first call of the run is a draft
    result = daydream("run")
    assert result.returncode == 1, result.stdout + result.stderr
    drafts = project / "data" / "gens" / "draft"
    [failed] = [d for d in drafts.iterdir() if (d / "error.json").exists()]
    error = json.loads((failed / "error.json").read_text())["error"]
    assert error == (
        f"answer truncated at max_tokens={max_tokens} (finish_reason=length); raise max_tokens in "
        f"config/daydream.yaml, then `daydream gens rm {failed.name} --yes` and re-run"
    )
    assert (failed / "raw.txt").read_text().strip() and not (failed / "metadata.json").exists()
    assert json.loads((failed / "call.json").read_text())["finish_reason"] == "length"
    assert f"  failed draft {failed.name}: {error}" in result.stdout
    assert "done 35, skipped (already complete) 0, failed 1, blocked 6, not started 0" in result.stdout

    rows = membership(project)
    essays = {r["gen_id"] for r in rows if r["parent_gen_id"] == failed.name}
    evaluations = {r["gen_id"] for r in rows if r["parent_gen_id"] in essays}
    assert len(essays) == 2 and len(evaluations) == 4
    for gen_id in essays | evaluations:  # reported as blocked, and never started
        assert re.search(
            rf"^  blocked (essay|evaluation) {gen_id}: its (draft|essay) \w+ (failed|is blocked)$", result.stdout, re.M
        )
        assert not any((project / "data" / "gens" / stage / gen_id).exists() for stage in ("essay", "evaluation"))
    assert endpoint.stats["requests"] == 36 - 1 - 4  # the blocked llm essay and its 4 evaluations made no call

    again = daydream("run")  # the kept answer is reused: same failure, no new call
    assert again.returncode == 1
    assert f"  failed draft {failed.name}: answer truncated at max_tokens={max_tokens}" in again.stdout
    assert endpoint.stats["requests"] == 31


def test_judge_answer_without_a_score_completes_with_the_error_in_metadata(project, endpoint):
    # without the word SCORE in its prompt the fake judge answers with prose and no score at all
    judge_b = project / "data" / "1_raw" / "generation_templates" / "evaluation" / "judge-b.txt"
    judge_b.write_text("Rate the novelty of:\n{{ response }}\nFinish with your grade.\n")
    result = daydream("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    assert endpoint.stats["requests"] == 36

    rows = [r for r in membership(project) if r["stage"] == "evaluation"]
    for row in rows:
        directory = project / "data" / "gens" / "evaluation" / row["gen_id"]
        meta = json.loads((directory / "metadata.json").read_text())
        if row["template_id"] == "judge-b":
            assert meta["score"] is None and meta["error"].startswith("parser 'complex': no score found")
            assert (directory / "raw.txt").read_text().strip() and (directory / "parsed.txt").read_text() == ""
            assert not (directory / "error.json").exists()
        else:
            assert meta["error"] == "" and meta["score"] is not None
    [folder] = list((project / "data" / "cohorts").iterdir())
    with (folder / "reports" / "parsed_scores.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 24 and sum(s["error"].startswith("parser 'complex'") for s in scores) == 12


def test_fixing_a_draft_parser_reparses_the_kept_answer_without_a_new_call(project, endpoint):
    raw = project / "data" / "1_raw"
    # the word SCORE makes the fake answer like a judge: no <essay> block, so the essay_block parser fails
    (raw / "generation_templates" / "draft" / "sketch.txt").write_text(
        "Notes about {{ concepts | map(attribute='name') | join(' and ') }}, then a SCORE line.\n"
    )
    first = daydream("run")
    assert first.returncode == 1
    assert "failed 3, blocked 18" in first.stdout  # the 3 sketch drafts; their 6 essays and those 12 evaluations
    failed = [d for d in (project / "data" / "gens" / "draft").iterdir() if (d / "error.json").exists()]
    assert len(failed) == 3
    for directory in failed:
        error = json.loads((directory / "error.json").read_text())["error"]
        assert error == (
            f"parser 'essay_block' failed: no <essay> block found; raw answer kept in {directory / 'raw.txt'}"
        )
        assert (directory / "call.json").exists() and not (directory / "metadata.json").exists()
    kept = {d.name: (d / "raw.txt").read_text() for d in failed}
    calls_before = endpoint.stats["requests"]
    assert calls_before == 6 + 3 + 12  # all drafts; the ladder drafts' llm essays and evaluations

    edit(raw / "draft_templates.csv", ",true,essay_block", ",true,")  # sketch: no parser, the draft is the answer
    second = daydream("run")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "failed 0, blocked 0" in second.stdout
    draft_prompts = {(project / "data" / "gens" / "draft" / name / "prompt.txt").read_text() for name in kept}
    sent = calls_sent(endpoint)
    assert [sent[MODELS["gen-paid"], p] for p in draft_prompts] == [1, 1, 1]  # each failed draft was asked once, ever
    assert endpoint.stats["requests"] == calls_before + 3 + 12  # only the unblocked essays and evaluations
    for name, answer in kept.items():
        directory = project / "data" / "gens" / "draft" / name
        meta = json.loads((directory / "metadata.json").read_text())
        assert meta["parser"] == "" and (directory / "raw.txt").read_text() == answer
        assert (directory / "parsed.txt").read_text() == answer and not (directory / "error.json").exists()


def test_truncated_judge_answer_is_recorded_as_an_error_not_scored(project, endpoint):
    assert daydream("run", "--stage", "draft").returncode == 0
    assert daydream("run", "--stage", "essay").returncode == 0
    endpoint.script("length")  # the first evaluation call is cut off at max_tokens
    result = daydream("run")
    assert result.returncode == 0, result.stdout + result.stderr
    metas = [json.loads(p.read_text()) for p in (project / "data" / "gens" / "evaluation").glob("*/metadata.json")]
    [cut] = [m for m in metas if m["finish_reason"] == "length"]
    assert cut["score"] is None
    assert cut["error"] == (
        f"answer truncated at max_tokens=300 (finish_reason=length); raise max_tokens in "
        f"config/daydream.yaml, then `daydream gens rm {cut['gen_id']} --yes` and re-run"
    )
    assert sum(m["score"] is not None for m in metas) == 23
