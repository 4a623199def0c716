"""One real, tiny cohort through the embedded model: 1 draft -> 1 essay -> 1 evaluation, every file checked.

The smoke cohort as shipped, with its draft and essay templates asking for shorter answers (see SHORTER)."""

import csv
import json
import shutil

import pytest
from conftest import REPO, daydream

from daydream_luigi.providers.local import server, weights

pytestmark = pytest.mark.skipif(
    weights.unavailable_reason() is not None, reason=f"embedded model not installed: {weights.unavailable_reason()}"
)


# The shipped smoke templates ask for at least 5 bullet points and an essay of about 200 words: about 1,000 generated
# tokens (432 + 556 measured), most of this test's time. Asked for shorter answers the model wrote 103 + 67 tokens and
# the judge 57 (44 s alone on 2 cores; a 60-word paragraph was 252 tokens, 64 s); the same cohort runs through the
# same code, and the judge's template and grammar are unchanged.
SHORTER = {
    "draft/free-notes.txt": (
        'Write at least 5 bullet points, one per line, each starting with "- ". Each bullet should describe one '
        "concrete idea in one or two sentences and use every concept.",
        'Reply with exactly 4 lines and nothing else. Each line starts with "- " and names, in at most 12 words, one '
        "idea that uses every concept.",
    ),
    "essay/essay-polish.txt": (
        "Write an essay of about 200 words (no more than 250) in three short paragraphs that develops this idea. "
        "Explain what the idea is and how it would work, give one concrete example, and end with one limitation or "
        "open question.",
        "Take the first idea above and reply with two sentences, at most 40 words in all, on what it is and how it "
        "would work.",
    ),
}


def shorten_answers(raw) -> None:
    for name, (old, new) in SHORTER.items():
        path = raw / "generation_templates" / name
        assert old in path.read_text(), f"{path} changed: update SHORTER"
        path.write_text(path.read_text().replace(old, new))


def test_smoke_cohort_runs_offline_and_scores_parse(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "data" / "1_raw", tmp_path / "data" / "1_raw")
    shorten_answers(tmp_path / "data" / "1_raw")
    env = {
        "DAYDREAM_DATA_ROOT": str(tmp_path / "data"),
        "DAYDREAM_CONFIG_DIR": str(tmp_path / "config"),
        "OPENROUTER_API_KEY": "",
        "DAYDREAM_LLM_BASE_URL": "http://127.0.0.1:9/v1",
    }  # nothing may go there
    result = daydream("run", "--cohort", "smoke", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "cohort smoke: done 3, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout

    with (tmp_path / "data" / "cohorts" / "smoke" / "membership.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == ["draft", "essay", "evaluation"]
    for row in rows:
        directory = tmp_path / "data" / "gens" / row["stage"] / row["gen_id"]
        for name in ("prompt.txt", "raw.txt", "parsed.txt", "call.json", "metadata.json"):
            assert (directory / name).stat().st_size > 0, f"{row['stage']} {name} is empty"
        meta = json.loads((directory / "metadata.json").read_text())
        assert (meta["llm_model_id"], meta["model"], meta["provider"]) == (
            "qwen-local",
            server.MODEL_STRING,
            "embedded",
        )
        assert meta["finish_reason"] == "stop" and meta["completion_tokens"] > 0
    evaluation = json.loads(
        (tmp_path / "data" / "gens" / "evaluation" / rows[2]["gen_id"] / "metadata.json").read_text()
    )
    assert evaluation["error"] == "" and 0 <= evaluation["score"] <= 10
    last_line = (
        (tmp_path / "data" / "gens" / "evaluation" / rows[2]["gen_id"] / "raw.txt").read_text().strip().splitlines()[-1]
    )
    assert last_line == f"SCORE: {evaluation['score']:g}"
    with (tmp_path / "data" / "cohorts" / "smoke" / "reports" / "pivot.csv").open() as handle:
        pivot = list(csv.DictReader(handle))
    assert float(pivot[0]["novelty-judge_qwen-local"]) == evaluation["score"]

    again = daydream("run", "--cohort", "smoke", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "done 0, skipped (already complete) 3" in again.stdout
    assert "starting the embedded model" not in again.stderr  # nothing to do: the model is not even started
