from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


LAST = "test_release_lab.py"  # publishes and lab-runs what the other modules built


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.fspath.basename == LAST)  # stable: the rest keep order


def buildtool(*args: str, env: Mapping[str, str] | None = None,
              timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, from the project root."""
    return subprocess.run([sys.executable, "-m", "buildtool", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


BASE = "localhost/debian:bookworm-minbase"
# This VM's container settings (ENVIRONMENT.md): vfs storage, chroot isolation for RUN steps,
# runc with explicit ulimits. A machine with its own containers.conf/storage.conf keeps them.
STORAGE_CONF = '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\n' \
               'graphroot = "/var/lib/containers/storage"\n'
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' \
                  '[engine]\nruntime = "runc"\n'


@pytest.fixture(scope="session")
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for tool in ("podman", "buildah", "debootstrap"):
        assert shutil.which(tool), f"{tool} is needed (.ci/run installs it with apt-get)"
    conf = tmp_path_factory.mktemp("containers")
    env: dict[str, str] = {}
    if "CONTAINERS_STORAGE_CONF" not in os.environ:
        (conf / "storage.conf").write_text(STORAGE_CONF)
        env["CONTAINERS_STORAGE_CONF"] = str(conf / "storage.conf")
    if "CONTAINERS_CONF" not in os.environ:
        (conf / "containers.conf").write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf / "containers.conf")
    env.setdefault("BUILDAH_ISOLATION", os.environ.get("BUILDAH_ISOLATION", "chroot"))
    env["BUILDTOOL_ENGINE"] = ""  # the automatic choice
    full = {**os.environ, **env}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "local-base-image.sh"), "bookworm",
                           BASE], env=full, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    yield env


@pytest.fixture(scope="session")
def bullseye() -> Path:
    """A Debian 11 root file system with its build tools (scripts/build-root.sh): glibc 2.31,
    GLIBCXX_3.4.28 — what an older distribution has. Kept between runs in the test cache
    (BUILDTOOL_TEST_ROOTS) because debootstrap takes a minute or two."""
    assert shutil.which("debootstrap"), "debootstrap is needed (.ci/run installs it)"
    base = Path(os.environ.get("BUILDTOOL_TEST_ROOTS")
                or Path.home() / ".cache" / "buildtool-test" / "roots")
    root = base / "bullseye"
    base.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-root.sh"), "bullseye",
                           str(root)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return root
