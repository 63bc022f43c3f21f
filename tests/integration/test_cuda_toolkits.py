"""The CUDA targets with toolkits buildtool provisions itself (no GPU and no system CUDA
needed): each toolkit is assembled (`buildtool toolchain install cuda-X.Y`, cached in
~/.cache/buildtool/toolchains), the target is configured for real by CMake (compiler
identification, FindCUDAToolkit finding cudart, cuBLAS and the driver stub), and one real
ggml-cuda translation unit is compiled for one architecture.

Full builds of the three targets take 20+ minutes each here: `nox -s cuda` runs them.
cublas11 needs g++-11 (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from buildtool import backends
from buildtool.toolchains import discovery as toolchain
from tests.integration.conftest import buildtool

ARCH = "89-real"
TARGETS = {"cublas13": "13.0", "cublas12": "12.4", "cublas11": "11.8"}


def _cache(build_dir: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+):[A-Z]+=(.*)", line)
        if m:
            entries[m.group(1)] = m.group(2)
    return entries


@pytest.mark.parametrize("target", list(TARGETS))
def test_cuda_target_configures_and_compiles_with_provisioned_toolkit(
        target: str, work: Path) -> None:
    version = TARGETS[target]
    kit = backends.toolchain(f"cuda-{version}")
    assert kit is not None
    if kit.installed() is None:
        proc = buildtool("toolchain", "install", target, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    prefix = kit.installed()
    assert prefix is not None
    toolchain.find_all.cache_clear()

    proc = buildtool("build", "--target", target, "--configure-only", "--gpu-archs", ARCH,
                     "--build-root", str(work / f"build-{target}"), "--json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    outcome = json.loads(proc.stdout)
    assert outcome["artifact"] is None and outcome["timings"]["configure"] > 0
    build_dir = Path(outcome["build_dir"])
    cache = _cache(build_dir)
    assert cache["CMAKE_CUDA_COMPILER"] == str(prefix / "bin" / "nvcc")
    assert cache["CUDAToolkit_ROOT"] == str(prefix)
    assert cache["CMAKE_CUDA_ARCHITECTURES"] == ARCH
    compiler = (build_dir / "CMakeFiles").glob("*/CMakeCUDACompiler.cmake")
    text = next(compiler).read_text()
    assert f'set(CMAKE_CUDA_COMPILER_VERSION "{version}.' in text
    assert str(prefix) in cache["CUDA_cublas_LIBRARY"]
    if target == "cublas11":
        assert cache["CMAKE_CUDA_HOST_COMPILER"].endswith("g++-11")

    # one real ggml-cuda translation unit, compiled by the provisioned nvcc
    # recipes/cmake adds llama.cpp as the subproject "llama.cpp"
    obj = "llama.cpp/ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/acc.cu.o"
    cmake = toolchain.best("cmake")
    assert cmake is not None
    done = subprocess.run([str(cmake.path), "--build", str(build_dir), "--target", obj],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-5000:]
    sections = subprocess.run(["objdump", "-h", str(build_dir / obj)], capture_output=True,
                              text=True, check=True).stdout
    assert ".nv_fatbin" in sections     # device code for the architecture is embedded
