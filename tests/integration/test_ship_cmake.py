"""recipes/cmake's install component ("buildtool": CMakeLists.txt + ship.cmake), configured
and installed by every CMake found here — the PyPI one and the system's (Debian 12: 3.25).
Install scripts run without the project's policies, so what works with one CMake must work
with the oldest. llama.cpp is replaced by an empty project; the test puts the files a build
would leave into bin/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from buildtool.toolchains import discovery as toolchain
from tests.integration.conftest import ROOT


def _cmakes() -> list[str]:
    """Every distinct cmake: buildtool's candidates and each one on PATH (the system's too)."""
    found = [str(p.path) for p in toolchain.find_all("cmake")]
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(directory) / "cmake"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found.append(str(candidate))
    by_target: dict[str, str] = {}
    for path in found:
        by_target.setdefault(str(Path(path).resolve()), path)
    return sorted(by_target.values())


CMAKES = _cmakes()


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize("cmake", CMAKES)
def test_install_component_ships_programs_and_each_library_once(cmake: str,
                                                                tmp_path: Path) -> None:
    fake = tmp_path / "llama.cpp"
    fake.mkdir()
    (fake / "CMakeLists.txt").write_text("project(fake NONE)\n")
    build = tmp_path / "build"
    configured = _run([cmake, "-S", str(ROOT / "recipes" / "cmake"), "-B", str(build),
                       f"-DLLAMA_CPP_SOURCE_DIR={fake}",
                       "-DBUILDTOOL_PROGRAMS=llama-server;llama-bench",
                       "-DBUILDTOOL_LEAVE_OUT=libggml-cpu-sapphirerapids.so",
                       "-DBUILDTOOL_DESTINATION=pkg/bin"])
    assert configured.returncode == 0, configured.stdout + configured.stderr
    bin_dir = build / "bin"
    bin_dir.mkdir()
    for program in ("llama-server", "llama-bench"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    (bin_dir / "libggml.so.0.25.3").write_text("the library")
    (bin_dir / "libggml.so.0").symlink_to("libggml.so.0.25.3")  # the SONAME link
    (bin_dir / "libggml.so").symlink_to("libggml.so.0")  # the link-time name
    (bin_dir / "libggml-cpu-haswell.so").write_text("a module")
    (bin_dir / "libggml-cpu-sapphirerapids.so").write_text("left out")
    out = tmp_path / "out"
    installed = _run([cmake, "--install", str(build), "--component", "buildtool",
                      "--prefix", str(out)])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shipped = out / "pkg" / "bin"
    assert sorted(p.name for p in shipped.iterdir()) == [
        "libggml-cpu-haswell.so", "libggml.so.0", "llama-bench", "llama-server"]
    assert not any(p.is_symlink() for p in shipped.iterdir())
    assert (shipped / "libggml.so.0").read_text() == "the library"
    assert os.access(shipped / "llama-server", os.X_OK)
    # a program the build did not produce is an error that names it
    (bin_dir / "llama-bench").unlink()
    again = _run([cmake, "--install", str(build), "--component", "buildtool", "--prefix",
                  str(tmp_path / "again")])
    assert again.returncode != 0 and "produced no 'llama-bench'" in again.stdout + again.stderr
