"""Two worker processes against a real luigid on loopback: the pool limit holds across processes."""

import json
import subprocess
import sys
from collections import Counter

import requests
from conftest import daydream, luigid, members_of
from fake_endpoint import FakeEndpoint


def test_two_workers_share_luigid_and_its_pool_limit(project):
    config = project / "config" / "luigi.cfg"
    config.write_text(config.read_text().replace("paid = 5", "paid = 2"))
    with luigid() as url:
        with FakeEndpoint(latency=0.2) as slow:
            env = {"DAYDREAM_LLM_BASE_URL": slow.base_url}
            args = ["run", "--scheduler", "central", "--scheduler-url", url, "--workers", "3"]
            first = subprocess.Popen(
                [sys.executable, "-m", "daydream_luigi", *args],
                env={**__import__("os").environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            second = daydream(*args, env=env)
            first_out, first_err = first.communicate(timeout=300)
            assert first.returncode == 0, first_err
            assert second.returncode == 0, second.stdout + second.stderr[-3000:]
            assert slow.stats["requests"] == 36  # each generation called once across both processes
            assert slow.stats["max_concurrent"] == 2
        tasks = requests.get(url + "api/task_list", params={"data": '{"status": "DONE"}'}, timeout=5).json()
        evaluations = [task_id for task_id in tasks["response"] if task_id.startswith("EvaluationTask")]
        assert len(evaluations) == 24
        message = requests.get(
            url + "api/get_task_status_message", params={"data": json.dumps({"task_id": evaluations[0]})}, timeout=5
        ).json()
        assert message["response"]["statusMessage"].startswith("done in ")
        progress = requests.get(
            url + "api/get_task_progress_percentage",
            params={"data": json.dumps({"task_id": evaluations[0]})},
            timeout=5,
        ).json()
        assert progress["response"]["progressPercentage"] == 100
        assert (project / "data" / "luigid" / "history.db").exists()

        # the visualiser's graph of the cohort's root holds the whole cohort: every generation, membership, reports
        from daydream_luigi.execution.tasks import Cohort

        root = Cohort(cohort_id=members_of()[0].cohort_id).task_id
        graph = requests.get(url + "api/dep_graph", params={"data": json.dumps({"task_id": root})}, timeout=5).json()[
            "response"
        ]
        families = Counter(task["name"] for task in graph.values())
        assert families == {
            "Cohort": 1,
            "Report": 1,
            "Pivot": 1,
            "ParseScores": 1,
            "Feed": 1,
            "Lineages": 1,
            "CohortMembership": 1,
            "Combinations": 1,
            "DraftTask": 6,
            "EssayTask": 12,
            "EvaluationTask": 24,
        }
        assert {task["status"] for task in graph.values()} == {"DONE"}
