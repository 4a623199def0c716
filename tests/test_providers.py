"""Providers: declared in config, keys read at call time and sent only to their own provider over https or loopback,
and a preflight that turns an unreachable server or a rejected key into one message."""

import pytest
from conftest import free_port
from fake_provider import FakeProvider

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.provider_settings import Provider, parse_providers, url_problem
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.endpoints import preflight, resolve

KEY_A = "fake-key-A-0123456789abcdef"
KEY_B = "fake-key-B-fedcba9876543210"
OPENROUTER = Provider(
    "openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "DAYDREAM_LLM_BASE_URL", dialect="openrouter"
)  # the dialect follows from the openrouter.ai URL
EMBEDDED = Provider("embedded", None, None, "DAYDREAM_EMBEDDED_BASE_URL")
PLAIN_HTTP = (
    "is plain http to another machine, so the key would travel unencrypted; use https://, or a loopback "
    "address (127.0.0.1, ::1, localhost), e.g. through an SSH tunnel"
)
URL_FORMS = "write it like https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1"


def problem_of(call) -> str:
    with pytest.raises(InputError) as caught:
        call()
    assert len(caught.value.problems) == 1
    return caught.value.problems[0]


# ---------------------------------------------------------------------------------------------------- declaration


def test_the_shipped_providers_parse():
    raw = {
        "openrouter": {
            "base_url": "https://openrouter.ai/api/v1",
            "base_url_env": "DAYDREAM_LLM_BASE_URL",
            "api_key_env": "OPENROUTER_API_KEY",
        },
        "embedded": {"base_url_env": "DAYDREAM_EMBEDDED_BASE_URL"},
        "ollama": {"base_url": "http://192.168.1.20:11434/v1"},
    }  # no key, so plain http to the LAN is fine
    parsed, problems = parse_providers(raw, "daydream.yaml")
    assert problems == []
    assert parsed == {
        "openrouter": OPENROUTER,
        "embedded": EMBEDDED,
        "ollama": Provider("ollama", "http://192.168.1.20:11434/v1", None),
    }


def test_provider_declarations_are_checked_without_quoting_a_key():
    raw = {
        "vllm": {"base_url": "http://10.0.0.5:8000/v1", "api_key_env": "VLLM_API_KEY"},
        "pasted": {"base_url": "https://example.org/v1", "api_key_env": KEY_A},
        "inline": {"base_url": "https://example.org/v1", "key": KEY_B},
        "nourl": {"api_key_env": "X_KEY"},
        "port": {"base_url": "http://127.0.0.1:99999/v1"},
        "scalar": "https://example.org/v1",
    }
    parsed, problems = parse_providers(raw, "daydream.yaml")
    assert parsed == {}
    assert problems == [
        "daydream.yaml: providers.vllm.base_url http://10.0.0.5:8000/v1 " + PLAIN_HTTP,
        "daydream.yaml: providers.pasted.api_key_env must be the name of an environment variable (letters, digits "
        "and _, e.g. OPENROUTER_API_KEY), not its value",
        "daydream.yaml: providers.inline: unknown key 'key'; allowed: api_key_env, base_url, base_url_env, batch_api, dialect (a "
        "key never goes in this file: put it in an environment variable and name that variable in api_key_env)",
        "daydream.yaml: providers.nourl has no base_url; add one, like https://openrouter.ai/api/v1 or "
        "http://127.0.0.1:8000/v1",
        "daydream.yaml: providers.port.base_url http://127.0.0.1:99999/v1 has an invalid port; " + URL_FORMS,
        "daydream.yaml: providers.scalar must be a mapping with base_url and api_key_env",
    ]
    assert not any(KEY_A in p or KEY_B in p for p in problems)
    assert parse_providers(None, "daydream.yaml")[1] == [
        "daydream.yaml: providers must map each provider id to its base_url and api_key_env (see the README, "
        "'Providers')"
    ]


@pytest.mark.parametrize(
    "url,sends_key,problem",
    [
        ("https://openrouter.ai/api/v1", True, None),
        ("http://127.0.0.1:8000/v1", True, None),
        ("http://127.8.9.10:8000/v1", True, None),
        ("http://[::1]:8000/v1", True, None),
        ("http://localhost:8000/v1", True, None),
        ("http://LocalHost:8000/v1", True, None),
        ("http://192.168.1.20:11434/v1", False, None),
        ("http://192.168.1.20:11434/v1", True, PLAIN_HTTP),
        ("http://0.0.0.0:8000/v1", True, PLAIN_HTTP),
        ("http://localhost.example.com/v1", True, PLAIN_HTTP),
        ("http://127.0.0.1.nip.io/v1", True, PLAIN_HTTP),
        ("http://evil.example#@127.0.0.1/v1", True, PLAIN_HTTP),  # the host is evil.example, whatever follows '#'
        (
            "http://127.0.0.1@evil.example/v1",
            True,
            "carries a user name or password; remove them and put the key in the variable named by api_key_env",
        ),
        (
            "openrouter.ai/api/v1",
            True,
            "is not a well-formed base URL (it needs http:// or https:// and a host); " + URL_FORMS,
        ),
        (
            "ftp://files.example/v1",
            False,
            "is not a well-formed base URL (it needs http:// or https:// and a host); " + URL_FORMS,
        ),
        ("https:///v1", False, "is not a well-formed base URL (it needs http:// or https:// and a host); " + URL_FORMS),
    ],
)
def test_url_problem(url, sends_key, problem):
    assert url_problem(url, sends_key) == problem


# ------------------------------------------------------------------------------------------------------- resolve


def test_the_key_is_read_at_call_time_and_returned_with_its_own_url():
    assert resolve(OPENROUTER, {"OPENROUTER_API_KEY": f" {KEY_A}\n"}) == ("https://openrouter.ai/api/v1", KEY_A)
    environ = {"OPENROUTER_API_KEY": KEY_A, "DAYDREAM_LLM_BASE_URL": "http://127.0.0.1:8000/v1/"}
    assert resolve(OPENROUTER, environ) == ("http://127.0.0.1:8000/v1", KEY_A)
    assert resolve(
        EMBEDDED, {"DAYDREAM_EMBEDDED_BASE_URL": "http://127.0.0.1:9000/v1", "OPENROUTER_API_KEY": KEY_A}
    ) == ("http://127.0.0.1:9000/v1", None)


def test_the_base_url_override_follows_the_same_rule():
    environ = {"OPENROUTER_API_KEY": KEY_A, "DAYDREAM_LLM_BASE_URL": "http://models.example.org/v1"}
    message = problem_of(lambda: resolve(OPENROUTER, environ))
    assert message == (
        "provider 'openrouter': base URL http://models.example.org/v1 (from DAYDREAM_LLM_BASE_URL) " + PLAIN_HTTP
    )
    environ["DAYDREAM_LLM_BASE_URL"] = "models.example.org:8000/v1"
    assert problem_of(lambda: resolve(OPENROUTER, environ)) == (
        "provider 'openrouter': base URL models.example.org:8000/v1 (from DAYDREAM_LLM_BASE_URL) is not a "
        "well-formed base URL (it needs http:// or https:// and a host); " + URL_FORMS
    )
    environ["DAYDREAM_LLM_BASE_URL"] = f"https://user:{KEY_B}@models.example.org/v1"
    message = problem_of(lambda: resolve(OPENROUTER, environ))
    assert message == (
        "provider 'openrouter': base URL https://***@models.example.org/v1 (from DAYDREAM_LLM_BASE_URL)"
        " carries a user name or password; remove them and put the key in the variable named by "
        "api_key_env"
    )


def test_a_missing_or_unusable_key_is_named_by_its_variable_only():
    assert problem_of(lambda: resolve(OPENROUTER, {})) == (
        "provider 'openrouter' needs its key in OPENROUTER_API_KEY, which is not set; export it, or remove "
        "providers.openrouter.api_key_env if the server needs no key"
    )
    message = problem_of(lambda: resolve(OPENROUTER, {"OPENROUTER_API_KEY": "fake-key\nfake-key-line-two"}))
    assert message == (
        "provider 'openrouter': the key in OPENROUTER_API_KEY contains spaces, line breaks or "
        "non-ASCII characters, which no HTTP header can carry; export it again"
    )
    assert problem_of(lambda: resolve(EMBEDDED, {})) == (
        "provider 'embedded' has no base URL: DAYDREAM_EMBEDDED_BASE_URL is not set; set it, or give "
        "providers.embedded.base_url in config/daydream.yaml"
    )


# ----------------------------------------------------------------------------------------------------- preflight


def local(name: str, base_url: str, key_env: str | None = "KEY_A") -> Provider:
    return Provider(name, base_url, key_env)


def test_preflight_passes_and_each_key_reaches_only_its_own_provider():
    with FakeProvider(key=KEY_A) as a, FakeProvider(key=KEY_B) as b, FakeProvider() as keyless:
        environ = {"KEY_A": KEY_A, "KEY_B": KEY_B}
        assert preflight(local("a", a.base_url), environ) is None
        assert preflight(local("b", b.base_url, "KEY_B"), environ) is None
        assert preflight(local("keyless", keyless.base_url, None), environ) is None
    assert a.requests == [{"path": "/v1/models", "authorization": f"Bearer {KEY_A}"}]
    assert b.requests == [{"path": "/v1/models", "authorization": f"Bearer {KEY_B}"}]
    assert keyless.requests == [{"path": "/v1/models", "authorization": None}]


def test_preflight_asks_openrouter_about_the_key(monkeypatch):
    assert endpoints.check_path("https://openrouter.ai/api/v1") == "key"
    assert endpoints.check_path("http://127.0.0.1:8000/v1") == "models"
    monkeypatch.setattr(endpoints, "KEY_CHECK_HOSTS", frozenset({"127.0.0.1"}))
    with FakeProvider(key=KEY_A) as server:
        preflight(local("openrouter", server.base_url), {"KEY_A": KEY_A})
    assert server.requests == [{"path": "/v1/key", "authorization": f"Bearer {KEY_A}"}]


def test_a_redirect_is_reported_not_followed_so_the_key_stays_home():
    with FakeProvider() as elsewhere:
        with FakeProvider(redirect_to=f"{elsewhere.base_url}/models") as server:
            message = problem_of(lambda: preflight(local("a", server.base_url), {"KEY_A": KEY_A}))
    assert message == (
        f"provider 'a' at {server.base_url}: GET /models is redirected (HTTP 302) to "
        f"{elsewhere.base_url}/models; use the address it redirects to as the base URL"
    )
    assert len(server.requests) == 1 and elsewhere.requests == []


def test_a_loopback_provider_is_reached_directly_never_through_a_proxy(monkeypatch):
    with FakeProvider() as proxy, FakeProvider(key=KEY_A) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        monkeypatch.setenv("http_proxy", proxy.base_url.removesuffix("/v1"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        preflight(local("a", server.base_url), {"KEY_A": KEY_A})
    assert proxy.requests == []
    assert server.requests == [{"path": "/v1/models", "authorization": f"Bearer {KEY_A}"}]


@pytest.mark.parametrize(
    "status,key_env,expected",
    [
        (401, "KEY_A", "the key in KEY_A was rejected (HTTP 401); check KEY_A"),
        (403, "KEY_A", "the key in KEY_A was rejected (HTTP 403); check KEY_A"),
        (
            401,
            None,
            "the server asks for a key (HTTP 401); name the environment variable holding it in providers.a.api_key_env",
        ),
        (
            500,
            "KEY_A",
            "GET /models answered HTTP 500; check the base URL (an OpenAI-compatible server answers GET /models)",
        ),
        (
            404,
            "KEY_A",
            "GET /models answered HTTP 404; check the base URL (an OpenAI-compatible server answers GET /models)",
        ),
    ],
)
def test_preflight_failures_are_one_message_without_the_key(status, key_env, expected):
    with FakeProvider(status=status) as server:
        message = problem_of(lambda: preflight(local("a", server.base_url, key_env), {"KEY_A": KEY_A}))
    assert message == f"provider 'a' at {server.base_url}: {expected}"
    assert KEY_A not in message
    assert len(server.requests) == 1


def test_a_wrong_key_is_rejected_by_the_server_and_never_quoted():
    with FakeProvider(key=KEY_B) as server:
        message = problem_of(lambda: preflight(local("a", server.base_url), {"KEY_A": KEY_A}))
    assert message == f"provider 'a' at {server.base_url}: the key in KEY_A was rejected (HTTP 401); check KEY_A"
    assert server.requests == [{"path": "/v1/models", "authorization": f"Bearer {KEY_A}"}]


def test_nothing_listening_is_one_message():
    url = f"http://127.0.0.1:{free_port()}/v1"
    message = problem_of(lambda: preflight(local("a", url), {"KEY_A": KEY_A}))
    assert message == (
        f"provider 'a' at {url}: cannot connect (connection refused: nothing listens there); start the "
        f"server or correct the base URL"
    )


def test_an_unknown_host_is_one_message():
    provider = Provider("a", "https://no-such-host.invalid/v1", "KEY_A")
    message = problem_of(lambda: preflight(provider, {"KEY_A": KEY_A}))
    assert message == (
        "provider 'a' at https://no-such-host.invalid/v1: cannot connect (host name not found); start "
        "the server or correct the base URL"
    )


def test_a_server_that_never_answers_is_one_message():
    with FakeProvider(hang=True) as server:
        message = problem_of(lambda: preflight(local("a", server.base_url), {"KEY_A": KEY_A}, timeout=0.2))
    assert message == (
        f"provider 'a' at {server.base_url}: no answer to GET /models within 0.2 s; check that the "
        f"server is up and the base URL is right"
    )


def test_plain_http_to_another_machine_is_refused_before_any_request():
    # Had a request been tried, the message would be about connecting to (or not finding) gateway.example.org.
    environ = {"OPENROUTER_API_KEY": KEY_A, "DAYDREAM_LLM_BASE_URL": "http://gateway.example.org/v1"}
    assert problem_of(lambda: preflight(OPENROUTER, environ)) == (
        "provider 'openrouter': base URL http://gateway.example.org/v1 (from DAYDREAM_LLM_BASE_URL) " + PLAIN_HTTP
    )


def test_every_backend_declared_in_core_has_its_runtime_in_providers():
    from daydream_luigi.core.backends import BACKENDS, HTTP, LOCAL, backend_of
    from daydream_luigi.providers.backends import EMBEDDERS, SERVERS

    assert set(EMBEDDERS) == set(BACKENDS) == {"local", "http"}
    assert set(SERVERS) == {name for name, backend in BACKENDS.items() if backend.starts_server} == {"local"}
    assert backend_of("embedded") is LOCAL and backend_of("openrouter") is HTTP and backend_of("vllm") is HTTP
