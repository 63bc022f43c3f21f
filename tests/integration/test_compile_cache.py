"""The shared compile cache on a real Redis server on loopback (Debian's redis-server).

Machine A (a clone, its own build root, an empty local ccache) builds the cpu target and
fills the server; machine B (another clone at another path, empty local ccache) builds the
same target from it; machine C builds while the server is stopped halfway and still succeeds,
the failed lookups counted. Marked slow: A compiles cold (about 10 minutes on 2 cores);
`scripts/bench_cache.py` takes the same figures with wall times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from scripts.bench_cache import free_port, start_redis

from tests.integration.conftest import ROOT


def _build(clone: Path, ccache_dir: Path, url: str) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir)}
    env.pop("BUILDTOOL_COMPILE_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "buildtool", "--matrix", str(clone / "build_matrix.yaml"),
         "build", "--target", "cpu", "--cpu", "x86-64-v2", "--no-smoke", "--artifact",
         "tarball", "--dist", str(clone / "dist"), "--compile-cache", url, "--json"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=5400, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.slow
def test_one_machine_compiles_the_others_hit(tmp_path: Path) -> None:
    port = free_port()
    server = start_redis(port, tmp_path)  # the benchmark's: Debian's redis-server on loopback
    url = f"redis://127.0.0.1:{port}"
    clones = {}
    for name in ("a", "b", "c"):
        clones[name] = tmp_path / f"machine-{name}"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clones[name])], check=True)
    try:
        a, a_err = _build(clones["a"], tmp_path / "ccache-a", url)
        assert a["compile_cache"]["remote"] == url
        assert f"compile cache: {url} (read-write; --compile-cache)" in a_err
        assert a["compile_cache"]["remote_misses"] == a["compile_cache"]["calls"] > 100
        b, b_err = _build(clones["b"], tmp_path / "ccache-b", url)
        stats = b["compile_cache"]
        # another path, an empty local cache: the objects from the server — all but llama's
        # unity sources, which CMake writes with absolute #include paths (10 of 201 here;
        # clones at the same path, as CI's are, hit those too)
        assert stats["calls"] == a["compile_cache"]["calls"]
        assert stats["hit_rate"] >= 0.9 and stats["remote_hits"] >= 0.9 * stats["calls"]
        assert f"compile cache: {stats['hits']}/{stats['calls']} hits" in b_err
        assert b["timings"]["cache_hit_rate"] >= 0.9
        # the server goes away while C compiles: the build succeeds and says so
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], check=False,
                       capture_output=True)
        stopper = threading.Timer(20, server.terminate)
        stopper.start()
        c, c_err = _build(clones["c"], tmp_path / "ccache-c", url)
        stopper.cancel()
        assert c["compile_cache"]["remote_errors"] > 0
        assert "could not reach the remote cache and were compiled here" in c_err
        assert Path(c["artifact"]).is_file()
    finally:
        server.terminate()
        server.wait()
