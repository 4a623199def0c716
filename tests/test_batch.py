"""Both batch clients against tests/fake_batch.py: submit, poll, results, mixed and missing results, every request
counted, errors in one line without the key."""

import json
import socket

import pytest
from fake_batch import FakeBatchServer, answer

from daydream_luigi.providers.batch import (
    OPENAI_LIMITS,
    OPENROUTER_LIMITS,
    BatchError,
    BatchLimits,
    BatchState,
    OpenAIBatches,
    OpenRouterBatches,
    RequestResult,
    Submitted,
    openai_jsonl,
    split,
)

KEY = "fake-batch-KEY-0123456789abcdef0123"
MODEL = "vendor/gen-model"


def body(prompt: str) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0.7, "max_tokens": 600}


ITEMS = [(f"g{i}", body(f"prompt {i}")) for i in range(1, 5)]
FAILED_G2 = "invalid_request_error: This model's maximum context length was exceeded"


def ok(custom_id: str, cost: bool = True) -> RequestResult:
    """A request's answer; OpenAI's (`cost` False) reports no cost."""
    return RequestResult(custom_id, answer(custom_id, dict(ITEMS)[custom_id], cost), None)


def test_openrouter_submit_poll_and_results_with_mixed_answers():
    with FakeBatchServer(KEY, in_progress_polls=2, fail_ids={"g2"}, page_size=3) as fake:
        client = OpenRouterBatches(fake.openrouter_url, KEY)
        submitted = client.submit(MODEL, ITEMS)
        assert submitted == Submitted("orb-1", ("g1", "g2", "g3", "g4"))
        assert fake.calls == {"openrouter_submit": 1}  # the id is known before any poll
        assert fake.batches["orb-1"]["items"] == ITEMS and fake.batches["orb-1"]["model"] == MODEL
        states = [client.poll(submitted.batch_id) for _ in range(3)]
        assert [(s.status, s.done) for s in states] == [
            ("in_progress", False),
            ("in_progress", False),
            ("completed", True),
        ]
        assert states[-1] == BatchState("orb-1", "completed", 4, 3, 1, pytest.approx(0.00075), None)
        results = client.results(submitted.batch_id, submitted.custom_ids)
        assert results == [ok("g1"), RequestResult("g2", None, FAILED_G2), ok("g3"), ok("g4")]
        assert fake.calls == {"openrouter_submit": 1, "openrouter_poll": 3, "openrouter_results": 2}  # 2 pages


def test_openai_upload_create_poll_and_results_mapped_back_by_custom_id():
    with FakeBatchServer(KEY, in_progress_polls=1, fail_ids={"g2"}) as fake:
        client = OpenAIBatches(fake.openai_url, KEY)
        submitted = client.submit(MODEL, ITEMS)
        assert submitted == Submitted("batch_2", ("g1", "g2", "g3", "g4"))  # file-in-1 was id 1
        assert fake.calls == {"openai_upload": 1, "openai_create": 1}
        uploaded = fake.files["file-in-1"].decode().splitlines()
        assert [json.loads(line) for line in uploaded] == [
            {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": b} for cid, b in ITEMS
        ]
        assert [client.poll("batch_2").status for _ in range(2)] == ["in_progress", "completed"]
        results = client.results("batch_2", list(reversed(submitted.custom_ids)))
        assert results == [
            ok("g4", False),
            ok("g3", False),
            RequestResult("g2", None, "HTTP 400: This model's maximum context length was exceeded"),
            ok("g1", False),
        ]
        assert fake.calls == {"openai_upload": 1, "openai_create": 1, "openai_poll": 3, "openai_content": 2}


def test_an_expired_batch_keeps_what_ran_and_reports_the_rest():
    with FakeBatchServer(KEY, in_progress_polls=0, outcome="expired") as fake:
        openrouter = OpenRouterBatches(fake.openrouter_url, KEY)
        batch = openrouter.submit(MODEL, ITEMS)
        assert openrouter.poll(batch.batch_id) == BatchState("orb-1", "expired", 4, 2, 0, pytest.approx(0.0005), None)
        assert openrouter.results(batch.batch_id, batch.custom_ids) == [
            ok("g1"),
            ok("g2"),
            RequestResult("g3", None, "no result for this request in batch orb-1"),
            RequestResult("g4", None, "no result for this request in batch orb-1"),
        ]
        openai = OpenAIBatches(fake.openai_url, KEY)
        batch = openai.submit(MODEL, ITEMS)
        assert openai.poll(batch.batch_id).status == "expired"
        expired = "batch_expired: This request could not be executed before the batch expired."
        assert openai.results(batch.batch_id, batch.custom_ids) == [
            ok("g1", False),
            ok("g2", False),
            RequestResult("g3", None, expired),
            RequestResult("g4", None, expired),
        ]


def test_cancelled_and_failed_batches():
    with FakeBatchServer(KEY, in_progress_polls=0, outcome="cancelled") as fake:
        openai = OpenAIBatches(fake.openai_url, KEY)
        batch = openai.submit(MODEL, ITEMS[:2])
        assert openai.poll(batch.batch_id).done
        assert openai.results(batch.batch_id, batch.custom_ids) == [
            ok("g1", False),
            RequestResult(
                "g2", None, "batch_cancelled: This request could not be executed before the batch cancelled."
            ),
        ]
    with FakeBatchServer(KEY, in_progress_polls=0, outcome="failed") as fake:
        openrouter = OpenRouterBatches(fake.openrouter_url, KEY)
        openai = OpenAIBatches(fake.openai_url, KEY)
        first, second = openrouter.submit(MODEL, ITEMS[:1]), openai.submit(MODEL, ITEMS[:1])
        assert openrouter.poll(first.batch_id) == BatchState(
            "orb-1", "failed", 1, 0, 0, 0.0, "validation failed: model does not support batch"
        )
        assert openai.poll(second.batch_id) == BatchState(
            second.batch_id, "failed", 1, 0, 0, None, "model does not support batch"
        )
        assert openai.results(second.batch_id, second.custom_ids) == [
            RequestResult("g1", None, f"no result for this request in batch {second.batch_id}")
        ]
        assert fake.calls["openai_content"] == 0  # a failed batch has no files to download


def test_errors_are_one_line_and_never_contain_the_key():
    wrong = "fake-batch-WRONG-0123456789abcdef"
    with FakeBatchServer(KEY) as fake:
        with pytest.raises(BatchError) as caught:
            OpenRouterBatches(fake.openrouter_url, wrong).submit(MODEL, ITEMS)
        assert str(caught.value) == "openrouter batch submit failed: HTTP 401: Incorrect API key provided: ***"
        with pytest.raises(BatchError) as caught:
            OpenAIBatches(fake.openai_url, wrong).submit(MODEL, ITEMS)
        assert str(caught.value) == "openai batch upload failed: HTTP 401: Incorrect API key provided: ***"
        assert fake.calls == {"openrouter_submit": 1, "openai_upload": 1}  # refused, never retried
        with pytest.raises(BatchError) as caught:
            OpenRouterBatches(fake.openrouter_url, KEY).poll("orb-404")
        assert str(caught.value) == "openrouter batch poll failed: HTTP 404: batch orb-404 not found"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BatchError) as caught:
        OpenAIBatches(f"http://127.0.0.1:{port}/v1", KEY).poll("batch_1")
    assert str(caught.value) == (
        f"openai batch poll failed: [Errno 111] Connection refused (http://127.0.0.1:{port}/v1/batches/batch_1)"
    )


def test_bad_batches_are_refused_before_any_request():
    with FakeBatchServer(KEY) as fake:
        client = OpenRouterBatches(fake.openrouter_url, KEY)
        too_many = [(f"g{i}", body("x")) for i in range(OPENROUTER_LIMITS.max_requests + 1)]
        for items, message in [
            (too_many, "5001 requests exceed a batch of at most 5000 requests"),
            ([("g1", body("a")), ("g1", body("b"))], "custom_id values must be unique"),
            ([("g1", {**body("a"), "model": "other/model"})], "a batch runs one model"),
            ([], "a batch needs at least one request"),
        ]:
            with pytest.raises(ValueError, match=message):
                client.submit(MODEL, items)
        assert fake.calls == {}


def test_split_keeps_order_within_count_and_size():
    items = [(f"g{i}", body("p" * 50)) for i in range(5)]
    assert [[cid for cid, _ in chunk] for chunk in split(items, BatchLimits(2, 10_000))] == [
        ["g0", "g1"],
        ["g2", "g3"],
        ["g4"],
    ]
    one_line = len(openai_jsonl(MODEL, items[:1]))
    assert [len(chunk) for chunk in split(items, BatchLimits(100, 3 * one_line))] == [3, 2]
    assert OPENAI_LIMITS == BatchLimits(50_000, 200_000_000)
