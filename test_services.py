"""Tests of the harness's own plumbing: services.py and the root conftest's fixtures.

The fixture tests run an inner pytest in a subprocess with the root conftest loaded as a
plugin, so they see exactly what a user sees: outcomes and printed output.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from services import ROOT, DaphneServer, RedisServer, ServiceError, find_executable, redis_ping


def test_redis_server_answers_on_loopback_and_is_gone_after_stop():
    server = RedisServer.start()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.ping()
    server.stop()
    assert not redis_ping("127.0.0.1", server.port)
    assert not server.workdir.exists()


def test_missing_executable_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"apt-get install chromium-driver"):
        find_executable("chromedriver")


def test_daphne_reports_its_cpu_and_memory(tmp_path):
    with DaphneServer.start(log_dir=tmp_path) as server:
        stats = server.stats()
        assert stats.cpu_seconds() > 0
        assert 10 < stats.rss_mb() < 1000
    assert server.process.returncode is not None


def run_inner_pytest(tmp_path: Path, test_source: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "REDIS_URL")}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "app")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rs",
         "-s", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, env=environ, cwd=tmp_path,
    )  # fmt: skip


NEEDS_REDIS = """
    def test_needs_redis(redis_url):
        assert redis_url
"""


def test_missing_redis_server_fails_in_ci(tmp_path):
    result = run_inner_pytest(tmp_path, NEEDS_REDIS, CI="true", PATH=str(tmp_path))
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "apt-get install redis-server" in result.stdout


def test_missing_redis_server_skips_locally_saying_what_to_install(tmp_path):
    result = run_inner_pytest(tmp_path, NEEDS_REDIS, PATH=str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "apt-get install redis-server" in result.stdout


def test_a_failing_test_shows_the_server_log_written_during_it(tmp_path):
    result = run_inner_pytest(
        tmp_path,
        """
        import urllib.request

        def test_fails(live_chat):
            (server,) = live_chat("inmemory")
            urllib.request.urlopen(server.url + "/chat/log-marker-room/").close()
            assert False, "on purpose"

        def test_passes(live_chat):
            (server,) = live_chat("inmemory")
            urllib.request.urlopen(server.url + "/chat/quiet-room/").close()
        """,
        DJANGO_SETTINGS_MODULE="mysite.settings",
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout
    assert "--- daphne 127.0.0.1:" in result.stdout
    assert "GET /chat/log-marker-room/" in result.stdout
    assert "quiet-room" not in result.stdout, "a passing test must not print the log"
