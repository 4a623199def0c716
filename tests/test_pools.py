"""Pool limits are Luigi resources: more workers than the limit never means more concurrent calls than the limit."""

from conftest import daydream

from fake_endpoint import FakeEndpoint


def test_paid_pool_limit_holds_with_more_workers_than_the_limit(project, tmp_path):
    config = tmp_path / "limits.cfg"
    config.write_text("[resources]\nfree = 1\npaid = 2\nlocal = 1\n[core]\nautoload_range = false\n")
    with FakeEndpoint(latency=0.2) as slow:
        result = daydream("run", "--workers", "6", env={"LUIGI_CONFIG_PATH": str(config),
                                                        "DAYDREAM_LLM_BASE_URL": slow.base_url})
        assert result.returncode == 0, result.stderr
        assert slow.stats["requests"] == 36
        assert slow.stats["max_concurrent"] == 2  # the limit, reached but never exceeded
