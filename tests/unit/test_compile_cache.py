"""The shared compile cache: its configuration (matrix < environment < command line), URLs
ccache can use, credentials kept out of output, the fallback when the server does not answer,
and the hit rate read from ccache's stats log (captured from ccache 4.7 with a Redis server
and with none listening)."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildtool import build as pipeline
from buildtool.errors import ConfigError, ExitCode, UsageError
from buildtool.progress import Reporter
from buildtool.text import forget_secrets, redact
from buildtool.toolchains import compile_cache as cc
from tests.unit.helpers import copy_project, run_cli


@pytest.fixture(autouse=True)
def _no_secrets() -> None:
    forget_secrets()


def test_urls_ccache_can_use() -> None:
    redis = cc.parse("redis://cache.lab:6379", "--compile-cache")
    assert redis is not None and redis.env() == {"CCACHE_REMOTE_STORAGE":
                                                 "redis://cache.lab:6379"}
    ro = cc.parse("http://cache.lab/ccache", "--compile-cache", read_only=True)
    assert ro is not None and ro.storage == "http://cache.lab/ccache|read-only=true"
    assert ro.describe() == "http://cache.lab/ccache (read-only; --compile-cache)"
    assert cc.parse("file:///srv/ccache", "x") is not None
    assert cc.parse("none", "x") is None and cc.parse("", "x") is None
    for bad, why in (("https://cache.lab/c", "is not a compile cache URL"),
                     ("s3://bucket", "is not a compile cache URL"),
                     ("redis://", "names no host"),
                     ("file://srv/ccache", "absolute local directory"),
                     ("redis://h|read-only=true", "is not a compile cache URL")):
        with pytest.raises(UsageError, match=why):
            cc.parse(bad, "--compile-cache")


def test_credentials_never_reach_output() -> None:
    cache = cc.parse("redis://builder:hunter2hunter2@cache.lab:6379", "$X")
    assert cache is not None
    assert cache.shown == "redis://***@cache.lab:6379"
    assert "hunter2" not in cache.describe()
    # anything that echoes the URL or its password (a command line, a log) is redacted
    assert redact(f"CCACHE_REMOTE_STORAGE={cache.storage}") == "CCACHE_REMOTE_STORAGE=***"
    assert "hunter2hunter2" not in redact("auth failed for hunter2hunter2")
    with pytest.raises(ConfigError, match="carries credentials") as info:
        cc.parse("redis://:pw12345678@cache.lab", "compile-cache.url", error=ConfigError,
                 allow_credentials=False)
    assert "pw12345678" not in str(info.value)


def test_the_command_line_over_the_environment_over_the_matrix() -> None:
    def conf(env: dict[str, str], option: str | None = None, ro: bool = False,
             matrix: str | None = "redis://matrix.lab") -> cc.CompileCache | None:
        return cc.configure(matrix_url=matrix, matrix_read_only=False,
                            matrix_origin="build_matrix.yaml:compile-cache.url", env=env,
                            option=option, option_read_only=ro)

    m = conf({})
    assert m is not None and m.url == "redis://matrix.lab" and not m.read_only
    e = conf({cc.ENV_URL: "http://env.lab/c", cc.ENV_READ_ONLY: "true"})
    assert e is not None and (e.url, e.read_only, e.origin) == (
        "http://env.lab/c", True, "$BUILDTOOL_COMPILE_CACHE")
    o = conf({cc.ENV_URL: "http://env.lab/c"}, "redis://cli.lab", ro=True)
    assert o is not None and (o.url, o.read_only) == ("redis://cli.lab", True)
    assert conf({cc.ENV_URL: "http://env.lab/c"}, "none") is None
    assert conf({}, matrix=None) is None
    with pytest.raises(ConfigError, match=r"\$BUILDTOOL_COMPILE_CACHE"):
        conf({cc.ENV_URL: "ftp://x"})


def test_a_server_that_does_not_answer_is_said_and_left_out(tmp_path: Path) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        up = cc.parse(f"redis://127.0.0.1:{port}", "--compile-cache")
        assert up is not None and cc.probe(up) is None
    down = cc.parse(f"redis://127.0.0.1:{port}", "--compile-cache")  # closed now
    assert down is not None and cc.probe(down, timeout=1) is not None
    missing = cc.parse(f"file://{tmp_path}/nowhere", "x")
    assert missing is not None and "is not a directory" in (cc.probe(missing) or "")
    # the build goes on with the local cache only, and says why
    out = io.StringIO()
    session = SimpleNamespace(reporter=Reporter(out, interactive=False))
    plan = SimpleNamespace(build_env=None)
    env = pipeline._cache_env(session, plan, down, tmp_path / "stats.log")  # type: ignore[arg-type]
    assert env == {"CCACHE_STATSLOG": str(tmp_path / "stats.log")}
    assert f"compile cache redis://127.0.0.1:{port} does not answer" in out.getvalue()
    assert "compiling without it" in out.getvalue()
    # an older ccache in the build environment cannot use it: said, not fatal
    old = SimpleNamespace(build_env=SimpleNamespace(tools={"ccache": {"version": "4.2.1"}}))
    env = pipeline._cache_env(session, old, down, tmp_path / "s.log")  # type: ignore[arg-type]
    assert "CCACHE_REMOTE_STORAGE" not in env and "ccache 4.2.1 has no remote" in out.getvalue()


def test_hit_rate_from_ccache_stats_log(data: Path, tmp_path: Path) -> None:
    warm = cc.read_stats_log(data / "ccache" / "remote-miss-then-hit.log")
    assert (warm.calls, warm.hits, warm.misses) == (2, 1, 1)
    assert (warm.remote_hits, warm.remote_misses, warm.remote_errors) == (1, 1, 0)
    assert warm.hit_rate == 0.5
    assert warm.describe() == "1/2 hits (50.0 %); remote: 1 hits, 1 misses"
    down = cc.read_stats_log(data / "ccache" / "remote-down.log")
    assert (down.calls, down.hits, down.remote_errors) == (3, 1, 2)
    assert down.to_json()["hit_rate"] == 0.3333
    assert cc.read_stats_log(tmp_path / "absent.log") == cc.CacheStats()
    (tmp_path / "junk.log").write_bytes(b"\xff\xfe garbage\n# x.c\ncache_miss\n")
    assert cc.read_stats_log(tmp_path / "junk.log").misses == 1


def test_the_matrix_names_a_cache_without_credentials(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    matrix = project / "build_matrix.yaml"
    text = matrix.read_text()
    matrix.write_text(text.replace("\ndefaults:\n",
                                   "\ncompile-cache:\n  url: redis://:s3cr3tpassword@cache.lab\n"
                                   "\ndefaults:\n", 1))
    line = next(i for i, t in enumerate(matrix.read_text().splitlines(), 1) if "s3cr3t" in t)
    code, _, err = run_cli(capsys, "--matrix", str(matrix), "plan", "-t", "cpu")
    assert code == ExitCode.CONFIG
    assert f"build_matrix.yaml:{line}: compile-cache.url: the URL carries credentials" in err
    assert "s3cr3tpassword" not in err and "BUILDTOOL_COMPILE_CACHE" in err


def test_a_cache_url_no_build_could_use_fails_a_dry_run(capsys: pytest.CaptureFixture[str],
                                                         fake_tools: object) -> None:
    code, _, err = run_cli(capsys, "build", "-t", "cpu", "--dry-run", "--compile-cache",
                           "redis://h\nx")
    assert code == ExitCode.USAGE and "is not a compile cache URL" in err
