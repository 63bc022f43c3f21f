"""CUDA toolkit discovery and assembly, on fake trees (no process is started)."""

from __future__ import annotations

import stat
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from buildtool import backends, cli
from buildtool.backends import cuda, cuda_toolkit
from buildtool.backends.base import Toolchain
from buildtool.backends.cuda_toolkit import (
    arrange_debian,
    arrange_wheels,
    driver_symbols,
    finish,
    kit_for,
    missing_parts,
    stub_source,
    toolkit_root,
)
from buildtool.errors import ToolchainError
from buildtool.toolchains import provision
from buildtool.toolchains.provision import unpack_wheel

CUDA_H = """
#define cuDeviceTotalMem                    cuDeviceTotalMem_v2
#define cuMemAlloc                          cuMemAlloc_v2
#define cuStreamGetCaptureInfo              __CUDA_API_PTSZ(cuStreamGetCaptureInfo_v3)
#define CUDA_VERSION 13000
CUresult CUDAAPI cuInit(unsigned int Flags);
CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice dev);
CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize);
CUresult CUDAAPI
cuLaunchKernel(CUfunction f, unsigned int gridDimX);
"""


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_stub_exports_declared_and_versioned_names() -> None:
    names = driver_symbols(CUDA_H)
    assert names == ["cuDeviceTotalMem", "cuDeviceTotalMem_v2", "cuInit", "cuLaunchKernel",
                     "cuMemAlloc", "cuMemAlloc_v2"]
    source = stub_source(names)
    assert "STUB(cuMemAlloc_v2)" in source and "CUDA_VERSION" not in source


def test_toolkit_root_per_layout(tmp_path: Path) -> None:
    assert toolkit_root(Path("/usr/local/cuda-12.4/bin/nvcc")) == Path("/usr/local/cuda-12.4")
    assert toolkit_root(tmp_path / "nvidia" / "cu13" / "bin" / "nvcc") == \
        tmp_path / "nvidia" / "cu13"
    # Debian's package: the real nvcc lives in /usr/lib/nvidia-cuda-toolkit/bin
    debian = tmp_path / "usr" / "lib" / "nvidia-cuda-toolkit" / "bin" / "nvcc"
    assert toolkit_root(debian) == tmp_path / "usr"


def test_missing_parts_names_each_piece(tmp_path: Path) -> None:
    _touch(tmp_path / "bin" / "nvcc")
    _touch(tmp_path / "include" / "cuda_runtime.h")
    _touch(tmp_path / "lib64" / "libcudart.so")
    _touch(tmp_path / "lib64" / "libcudart_static.a")
    assert missing_parts(tmp_path) == ["cuobjdump (the device-code audit)", "cuBLAS headers",
                                       "cuBLAS library", "libcuda.so (driver or link stub)"]
    # Debian's multiarch layout counts too
    _touch(tmp_path / "include" / "cublas_v2.h")
    _touch(tmp_path / "lib" / "x86_64-linux-gnu" / "libcublas.so")
    _touch(tmp_path / "lib" / "x86_64-linux-gnu" / "stubs" / "libcuda.so")
    _touch(tmp_path / "bin" / "cuobjdump")
    assert missing_parts(tmp_path) == []


def _debian_staging(root: Path) -> None:
    usr = root / "usr"
    _touch(usr / "bin" / "nvcc", b"#!/bin/sh\nexec /usr/lib/nvidia-cuda-toolkit/bin/nvcc\n")
    for tool in ("ptxas", "fatbinary", "nvlink", "cudafe++", "bin2c"):
        _touch(usr / "bin" / tool)
    tk = usr / "lib" / "nvidia-cuda-toolkit"
    _touch(tk / "bin" / "nvcc", b"ELF")
    _touch(usr / "bin" / "cuobjdump", b"ELF")  # Debian installs it into /usr/bin
    _touch(tk / "bin" / "cicc")
    _touch(tk / "bin" / "crt" / "link.stub")
    (tk / "bin" / "nvcc.profile").symlink_to("/etc/nvcc.profile")
    _touch(tk / "libdevice" / "libdevice.10.bc")
    _touch(usr / "include" / "cuda_runtime.h")
    _touch(usr / "include" / "cuda.h", CUDA_H.encode())
    _touch(usr / "include" / "cub" / "cub.cuh")
    lib = usr / "lib" / "x86_64-linux-gnu"
    _touch(lib / "libcudart_static.a")
    _touch(lib / "libnvvm.so.4.0.0")
    _touch(lib / "stubs" / "libcuda.so")
    (lib / "libcudart.so").symlink_to("libcudart.so.12")       # target comes from a wheel
    (lib / "libcufft.so").symlink_to("libcufft.so.11")         # target never fetched


def _wheel_tree(root: Path) -> None:
    _touch(root / "nvidia" / "cuda_runtime" / "__init__.py")
    _touch(root / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12")
    _touch(root / "nvidia" / "cublas" / "include" / "cublas_v2.h")
    _touch(root / "nvidia" / "cublas" / "lib" / "libcublas.so.12")
    _touch(root / "nvidia" / "cublas" / "lib" / "libcublasLt.so.12")


def test_debian_and_wheels_arranged_into_nvidia_layout(tmp_path: Path) -> None:
    staging, wheels, prefix = tmp_path / "debs", tmp_path / "wheels", tmp_path / "prefix"
    _debian_staging(staging)
    _wheel_tree(wheels)
    arrange_debian(staging, prefix)
    arrange_wheels(wheels, ("nvidia/cuda_runtime", "nvidia/cublas"), prefix)
    added = finish(prefix)

    assert (prefix / "bin" / "nvcc").read_bytes() == b"ELF"         # not Debian's wrapper
    assert (prefix / "nvvm" / "bin" / "cicc").is_file()
    assert (prefix / "nvvm" / "libdevice" / "libdevice.10.bc").is_file()
    assert (prefix / "nvvm" / "lib64" / "libnvvm.so.4.0.0").is_file()
    assert (prefix / "include" / "cub" / "cub.cuh").is_file()
    assert (prefix / "lib64" / "libcudart.so").resolve() == \
        (prefix / "lib64" / "libcudart.so.12").resolve()
    assert not (prefix / "lib64" / "libcufft.so").is_symlink()      # dangling: removed
    assert "lib64/libcublas.so -> libcublas.so.12" in added
    assert "lib64/libcublasLt.so -> libcublasLt.so.12" in added
    profile = (prefix / "bin" / "nvcc.profile")
    assert not profile.is_symlink() and '"-L$(TOP)/lib64"' in profile.read_text()
    assert not list(prefix.rglob("__init__.py")) and not (prefix / "usr").exists()
    assert missing_parts(prefix) == []


def test_pypi_cu13_tree_gets_lib64_and_links(tmp_path: Path) -> None:
    wheels, prefix = tmp_path / "wheels", tmp_path / "prefix"
    cu13 = wheels / "nvidia" / "cu13"
    _touch(cu13 / "bin" / "nvcc")
    _touch(cu13 / "bin" / "cuobjdump")  # nvidia-cuda-cuobjdump
    _touch(cu13 / "bin" / "nvcc.profile", b"LIBRARIES =+ -L$(TOP)/lib$(_TARGET_SIZE_)\n")
    _touch(cu13 / "lib" / "libcudart.so.13")
    _touch(cu13 / "lib" / "libcublas.so.13")
    _touch(cu13 / "lib" / "libcudart_static.a")
    _touch(cu13 / "include" / "cuda_runtime.h")
    _touch(cu13 / "include" / "cublas_v2.h")
    _touch(prefix / "lib64" / "stubs" / "libcuda.so")   # so finish() need not compile one
    arrange_wheels(wheels, ("nvidia/cu13",), prefix)
    finish(prefix)
    assert (prefix / "lib").is_symlink() and (prefix / "lib" / "libcudart.so").exists()
    # the wheel's own nvcc.profile is kept: it already knows the layout
    assert "_TARGET_SIZE_" in (prefix / "bin" / "nvcc.profile").read_text()
    assert missing_parts(prefix) == []


def test_unpack_wheel_keeps_modes_and_refuses_escapes(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        exe = zipfile.ZipInfo("nvidia/cu13/bin/nvcc")
        exe.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(exe, b"ELF")
        zf.writestr("nvidia/cu13/include/cuda.h", "x")
    unpack_wheel(wheel, tmp_path / "out")
    assert (tmp_path / "out" / "nvidia/cu13/bin/nvcc").stat().st_mode & 0o111
    assert not (tmp_path / "out" / "nvidia/cu13/include/cuda.h").stat().st_mode & 0o111
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../escape", "x")
    with pytest.raises(ToolchainError, match="leaves the prefix"):
        unpack_wheel(bad, tmp_path / "out2")


def test_kit_names() -> None:
    assert kit_for("cuda-12.4").version == "12.4"
    assert kit_for("12").version == "12.4" and kit_for("cuda-13").version == "13.0"
    assert kit_for("cuda-11.8").debian_suite == "bookworm"
    assert all(w.count("==") == 1 for kit in cuda_toolkit.KITS.values() for w in kit.wheels)
    with pytest.raises(ToolchainError) as info:
        kit_for("cuda-10.2")
    assert "cuda-13.0, cuda-12.4, cuda-11.8" in (info.value.hint or "")


def test_nvcc_candidates_ranked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home-cuda"
    cache = tmp_path / "cache"
    site = tmp_path / "lib" / "site-packages"
    monkeypatch.setenv("CUDA_HOME", str(home))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("BUILDTOOL_CACHE", str(cache))
    monkeypatch.setattr(sys, "path", [str(site)])
    order = cuda.nvcc_candidates()
    assert order[0] == home / "bin" / "nvcc"
    for name in ("cuda-11.8", "cuda-12.4", "cuda-13.0"):
        _touch(cache / "toolchains" / name / "bin" / "nvcc")
    _touch(site / "nvidia" / "cu13" / "bin" / "nvcc")
    order = cuda.nvcc_candidates()
    provisioned = [p.parent.parent.name for p in order if cache in p.parents]
    assert provisioned == ["cuda-13.0", "cuda-12.4", "cuda-11.8"]   # newest first
    assert order.index(Path("/usr/local/cuda/bin/nvcc")) > 1
    assert site / "nvidia" / "cu13" / "bin" / "nvcc" in order
    assert order[-1] == Path("/usr/lib/nvidia-cuda-toolkit/bin/nvcc")


def test_toolchain_install_accepts_a_target_name(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path, fake_tools: object) -> None:
    calls: list[str] = []

    def fake_toolchains() -> dict[str, Toolchain]:
        def make(name: str) -> Toolchain:
            return Toolchain(name=name, installed=lambda: None,
                             install=lambda progress: calls.append(name) or tmp_path / name)
        return {n: make(n) for n in ("vulkan-headers", "cuda-13.0", "cuda-12.4", "cuda-11.8")}

    monkeypatch.setattr(backends, "toolchains", fake_toolchains)
    monkeypatch.setattr(backends, "toolchain", lambda name: fake_toolchains().get(name))
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["toolchain", "install", "cublas12"])
    assert result.exit_code == 0, result.output
    assert calls == ["cuda-12.4"] and f"cuda-12.4: {tmp_path / 'cuda-12.4'}" in result.output
    result = runner.invoke(cli.cli, ["toolchain", "install", "cuda-12.5"])
    assert result.exit_code == 2 and "Did you mean 'cuda-12.4'?" in result.output
    result = runner.invoke(cli.cli, ["toolchain", "install", "cpu"])
    assert isinstance(result.exception, ToolchainError)
    assert "needs no toolchain buildtool can provision" in str(result.exception)


def test_registry_failures_are_toolchain_errors(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from buildtool import cmd
    from buildtool.errors import CommandError

    def unreachable(argv: list[str], **_: object) -> str:
        raise CommandError(argv, 100, ["E: Failed to fetch http://deb.debian.org/..."])

    monkeypatch.setattr(cmd, "capture", unreachable)
    monkeypatch.setattr(cmd, "which", lambda name, path=None: f"/usr/bin/{name}")
    with pytest.raises(ToolchainError) as info:
        provision.debian_packages(("nvidia-cuda-toolkit",), "trixie", tmp_path / "d")
    assert info.value.exit_code == 5
    assert "Failed to fetch" in info.value.message and "mirror" in (info.value.hint or "")
    with pytest.raises(ToolchainError) as info:
        provision.pypi_wheels(("nvidia-cublas==13.0.2.14",), tmp_path / "w")
    assert "nvidia-cublas==13.0.2.14" in info.value.message
