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


KERNEL = """
__global__ void add(float *a, const float *b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] += b[i];
}
extern "C" void launch(float *a, const float *b, int n) { add<<<(n + 255) / 256, 256>>>(a, b, n); }
"""


@pytest.mark.parametrize("version", ["12.4", "13.0"])
def test_the_device_code_audit_reads_what_nvcc_compiled(version: str, tmp_path: Path) -> None:
    """A small CUDA library compiled by the provisioned nvcc for two architectures, as CMake
    asks for them (75-real: SASS only; 86: SASS and PTX), listed by the toolkit's cuobjdump
    and held against gpu-archs; the GPUs it covers follow."""
    from buildtool.backends import REGISTRY, cuda_devicecode

    kit = backends.toolchain(f"cuda-{version}")
    assert kit is not None
    prefix = kit.installed()
    if prefix is None:
        proc = buildtool("toolchain", "install", f"cuda-{version}", timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        prefix = kit.installed()
    assert prefix is not None
    nvcc = prefix / "bin" / "nvcc"
    (tmp_path / "k.cu").write_text(KERNEL)
    lib = tmp_path / "libkernels.so"
    subprocess.run([str(nvcc), "-shared", "-Xcompiler", "-fPIC", "-o", str(lib),
                    str(tmp_path / "k.cu"), "-gencode", "arch=compute_75,code=sm_75",
                    "-gencode", "arch=compute_86,code=[sm_86,compute_86]"],
                   check=True, capture_output=True, timeout=600)
    host_only = tmp_path / "libplain.so"
    (tmp_path / "plain.c").write_text("int plain(int a) { return a + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(host_only), str(tmp_path / "plain.c")],
                   check=True)
    cuda = REGISTRY["cuda"]
    tools = {"nvcc": {"path": str(nvcc), "version": version}}
    record = cuda.device_code([lib, host_only], tools=tools, toolkit=version,
                              gpu_archs=("75-real", "86"))
    assert record is not None and record.verdict == "pass", record
    assert set(record.files) == {"libkernels.so"}
    assert record.code.sass == ("75", "86") and record.code.ptx == ("86",)
    assert record.tool.startswith("cuobjdump ") and str(prefix) in record.tool
    assert record.min_driver == cuda_devicecode.MIN_DRIVER[int(version.split(".", maxsplit=1)[0])]
    assert cuda_devicecode.coverage(record.code, "8.9") == "sm_86 SASS"
    assert cuda_devicecode.coverage(record.code, "9.0") == \
        "compute_86 PTX (compiled by the driver)"
    assert cuda_devicecode.coverage(record.code, "8.0") is None  # sm_75 is Turing only
    # a build that asked for Ampere PTX as well (80) finds it missing
    wrong = cuda.device_code([lib], tools=tools, toolkit=version,
                             gpu_archs=("75-real", "80-virtual", "86"))
    assert wrong is not None and wrong.verdict == "fail"
    assert wrong.violations == ("libkernels.so lacks compute_80 PTX",)
