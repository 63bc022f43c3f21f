"""AMD ROCm / HIP (hipblas)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

from packaging.version import InvalidVersion, Version

from buildtool import cmd
from buildtool.backends.base import Backend, BackendContext, Dynamic, find_tool
from buildtool.errors import CommandError, ToolchainError
from buildtool.records import HostFacts
from buildtool.toolchains.discovery import Program, ToolSpec, version_key
from buildtool.toolchains.engines import Devices


def rocm_roots() -> list[Path]:
    """ROCm installations: $ROCM_PATH, $HIP_PATH, /opt/rocm, then /opt/rocm-X.Y.Z newest first."""
    roots = [Path(r) for r in (os.environ.get("ROCM_PATH"), os.environ.get("HIP_PATH")) if r]
    roots.append(Path("/opt/rocm"))
    roots += sorted(Path("/opt").glob("rocm-*"), key=version_key, reverse=True)
    return list(dict.fromkeys(roots))


_CMAKE_VERSION_RE = re.compile(r'set\(PACKAGE_VERSION "([0-9.]+)"\)')


def rocm_library(name: str) -> Iterator[Program]:
    """hipBLAS/rocBLAS: the shared library in each ROCm root, its version from the CMake
    package's version file (or the library's file name)."""
    for root in rocm_roots():
        libs = sorted((root / "lib").glob(f"lib{name}.so*"), key=lambda p: len(p.name))
        if not libs:
            continue
        version: Version | None = None
        config = root / "lib" / "cmake" / name / f"{name}-config-version.cmake"
        text = config.read_text(errors="replace") if config.is_file() else ""
        match = _CMAKE_VERSION_RE.search(text) or re.search(r"\.so\.(\d+\.\d+)", libs[-1].name)
        if match:
            with contextlib.suppress(InvalidVersion):
                version = Version(match.group(1))
        yield Program(name, libs[0], version)


def _in_rocm(name: str) -> Callable[[], list[Path]]:
    return lambda: [r / "bin" / name for r in rocm_roots()]


class HipBackend(Backend):
    family = "hip"
    finders = MappingProxyType({
        "hipcc": ToolSpec(("hipcc",), version_pattern=r"HIP version: (\d+\.\d+)",
                          install="ROCm with hipBLAS/rocBLAS (https://rocm.docs.amd.com)",
                          places=_in_rocm("hipcc")),
        "hipconfig": ToolSpec(("hipconfig",), install="ROCm (hipconfig ships with HIP)",
                              places=_in_rocm("hipconfig")),
        "hipblas": ToolSpec((), install="ROCm's hipblas-dev (and rocblas-dev), e.g. "
                            "`apt-get install hipblas-dev` from AMD's repository, or the "
                            "rocm/dev-ubuntu image", find=lambda: rocm_library("hipblas")),
        "rocblas": ToolSpec((), install="ROCm's rocblas-dev, or the rocm/dev-ubuntu image",
                            find=lambda: rocm_library("rocblas")),
    })
    tools = ("hipcc",)
    ci_container = True
    wheels_in_container = True
    module_file = "libggml-hip.so"
    gpu_vendors = ("AMD",)

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        return {"ROCM_VERSION": toolkit or "", "AMDGPU_TARGETS": define("GPU_TARGETS") or ""}

    def host_fit(self, host: HostFacts) -> str | None:
        return None if host.devices.get("/dev/kfd") else "no AMD GPU (/dev/kfd)"

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        wanted = ("/dev/kfd", "/dev/dri")
        present = tuple(d for d in wanted if exists(d))
        return Devices(paths=present, groups=("video",) if present else (),
                       absent=tuple(d for d in wanted if d not in present))

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ("gfx908", "gfx90a", "gfx942", "gfx1030", "gfx1100")

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        hipconfig = find_tool("hipconfig") if ctx.probe else None
        root, clang_dir = "/opt/rocm", "/opt/rocm/llvm/bin"
        if hipconfig is not None:
            try:
                root = cmd.capture([str(hipconfig.path), "-R"]).strip() or root
                clang_dir = cmd.capture([str(hipconfig.path), "-l"]).strip() or clang_dir
            except (CommandError, ToolchainError):
                pass
        # As llama.cpp's .devops/rocm.Dockerfile:
        #   HIPCXX="$(hipconfig -l)/clang" HIP_PATH="$(hipconfig -R)"
        return Dynamic(
            defines=(("GPU_TARGETS", ";".join(ctx.gpu_archs), "gpu-archs"),),
            env=(("HIPCXX", f"{clang_dir}/clang", "hipconfig -l"),
                 ("HIP_PATH", root, "hipconfig -R")),
        )



BACKEND = HipBackend()
