"""Discovery of ROCm libraries and oneAPI on fake trees, the preflight messages they feed,
and `doctor`'s "which targets does each tool enable"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.version import Version

from buildtool import cli
from buildtool.backends import hip, sycl
from buildtool.config import preflight
from buildtool.config.project import load_project
from buildtool.config.resolve import resolve
from buildtool.source.vendor import load_lock
from buildtool.toolchains import discovery as toolchain
from buildtool.toolchains.discovery import Program
from tests.unit.helpers import ROOT, fake_cuda_tree


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_rocm_libraries_with_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rocm = tmp_path / "rocm-7.2.1"
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    monkeypatch.delenv("HIP_PATH", raising=False)
    _touch(rocm / "lib" / "libhipblas.so.3.2.70201")
    (rocm / "lib" / "libhipblas.so").symlink_to("libhipblas.so.3.2.70201")
    _touch(rocm / "lib" / "cmake" / "hipblas" / "hipblas-config-version.cmake",
           'set(PACKAGE_VERSION "3.2.0")\n')
    _touch(rocm / "lib" / "librocblas.so.5.2.70201")           # no CMake file: name it is
    (hipblas,) = hip.rocm_library("hipblas")
    assert hipblas.path == rocm / "lib" / "libhipblas.so" and hipblas.version == Version("3.2.0")
    (rocblas,) = hip.rocm_library("rocblas")
    assert rocblas.version == Version("5.2")
    assert hip.rocm_roots()[0] == rocm


def test_oneapi_setvars_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oneapi = tmp_path / "oneapi"
    monkeypatch.setenv("ONEAPI_ROOT", str(oneapi))
    assert not [p for p in sycl.setvars() if p.path.is_relative_to(oneapi)]
    _touch(oneapi / "setvars.sh", "# oneAPI\n")
    (oneapi / "compiler" / "2025.3").mkdir(parents=True)
    (oneapi / "compiler" / "2026.1").mkdir()
    (oneapi / "compiler" / "latest").symlink_to("2026.1")
    found = next(sycl.setvars())
    assert found.path == oneapi / "setvars.sh" and found.version == Version("2026.1")
    assert sycl.oneapi_roots()[0] == oneapi
    _touch(oneapi / "compiler" / "2026.1" / "bin" / "icpx").chmod(0o755)
    first = next(toolchain._candidates("icpx", toolchain.TOOLS["icpx"]))
    assert first == oneapi / "compiler" / "latest" / "bin" / "icpx"


def _resolved(name: str) -> object:
    project = load_project(ROOT)
    from buildtool.detect.cpu import parse_proc_cpuinfo

    cpu = parse_proc_cpuinfo((ROOT / "tests/data/cpuinfo/linux-x86_64-ryzen9-5950x-zen3.txt")
                             .read_text(), "x86_64")
    return resolve(project, name, lock=load_lock(ROOT / "vendor" / "llama.cpp.lock.json"),
                   host_cpu=cpu, host_platform="linux-x86_64", env={})


def test_sycl_names_the_setvars_it_found(fake_tools: dict[str, list[Program]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEAPI_ROOT", raising=False)
    monkeypatch.delenv("SETVARS_COMPLETED", raising=False)
    problems = preflight.check(_resolved("intel"))  # type: ignore[arg-type]
    assert any("oneapi: not found" in p.what and "setvars.sh" in p.fix for p in problems)
    for tool in ("icx", "icpx"):
        fake_tools[tool] = [Program(tool, Path(f"/opt/intel/oneapi/compiler/2026.1/bin/{tool}"),
                                    Version("2026.1"))]
    fake_tools["oneapi"] = [Program("oneapi", Path("/opt/intel/oneapi/setvars.sh"),
                                    Version("2026.1"))]
    (problem,) = preflight.check(_resolved("intel"))  # type: ignore[arg-type]
    assert "oneAPI 2026.1 is installed but its environment is not loaded" in problem.what
    assert problem.fix == "run `source /opt/intel/oneapi/setvars.sh` before buildtool"
    monkeypatch.setenv("ONEAPI_ROOT", "/opt/intel/oneapi")
    assert preflight.check(_resolved("intel")) == []  # type: ignore[arg-type]


def test_hip_needs_hipblas_and_rocblas(fake_tools: dict[str, list[Program]]) -> None:
    for tool in ("hipcc", "hipconfig"):
        fake_tools[tool] = [Program(tool, Path(f"/opt/rocm/bin/{tool}"), Version("7.2"))]
    problems = preflight.check(_resolved("hipblas"))  # type: ignore[arg-type]
    assert [p.what for p in problems] == ["hipblas needs hipblas: not found",
                                          "hipblas needs rocblas: not found"]
    assert "hipblas-dev" in problems[0].fix
    for lib in ("hipblas", "rocblas"):
        fake_tools[lib] = [Program(lib, Path(f"/opt/rocm/lib/lib{lib}.so"), Version("3.0"))]
    assert preflight.check(_resolved("hipblas")) == []  # type: ignore[arg-type]


def test_doctor_says_which_targets_each_tool_enables(
        fake_tools: dict[str, list[Program]], tmp_path: Path) -> None:
    good = fake_cuda_tree(tmp_path / "cuda-12.4")
    bare = fake_cuda_tree(tmp_path / "cuda", lacking=("cuBLAS headers", "cuBLAS library"))
    fake_tools["nvcc"] = [Program("nvcc", good / "bin" / "nvcc", Version("12.4")),
                          Program("nvcc", bare / "bin" / "nvcc", Version("13.0"))]
    fake_tools["glslc"] = [Program("glslc", Path("/usr/bin/glslc"), Version("11.13"))]
    fake_tools["vulkan-headers"] = [
        Program("vulkan-headers", Path("/usr/include"), Version("1.3.239"))]
    result = CliRunner().invoke(cli.cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    tools = json.loads(result.output)["tools"]
    assert tools["nvcc"][0]["enables"] == ["cublas12"]
    assert tools["nvcc"][1]["enables"] == []
    assert tools["nvcc"][1]["unusable"] == "its toolkit lacks cuBLAS headers, cuBLAS library"
    assert tools["glslc"][0]["enables"] == ["vulkan"]
    assert tools["vulkan-headers"][0]["enables"] == []          # 1.3 is too old for vulkan
    assert "metal" not in tools["cmake"][0]["enables"]          # not on a Linux host
    assert {"cpu", "cublas11", "vulkan"} <= set(tools["cmake"][0]["enables"])
    text = CliRunner().invoke(cli.cli, ["doctor"]).output
    assert f"{good / 'bin' / 'nvcc'}  → cublas12" in text
    assert "(its toolkit lacks cuBLAS headers, cuBLAS library)" in text
