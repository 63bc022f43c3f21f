"""NVIDIA CUDA (cublas11, cublas12, cublas13...)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from buildtool.backends import cuda_devicecode, cuda_toolkit
from buildtool.backends.base import (
    Backend,
    BackendContext,
    Dynamic,
    Problem,
    Progress,
    Toolchain,
    find_tool,
    has_gpu,
)
from buildtool.backends.cuda_toolkit import missing_parts, toolkit_major, toolkit_root
from buildtool.records import DeviceCodeRecord, GpuRecord, HostFacts
from buildtool.toolchains import discovery
from buildtool.toolchains.discovery import Program, ToolSpec, version_key
from buildtool.toolchains.engines import Devices
from buildtool.toolchains.provision import toolchains_dir


def default_archs(toolkit: str | None) -> tuple[str, ...]:
    """What llama.cpp's ggml-cuda/CMakeLists.txt builds by default for this CUDA version,
    except that CUDA 11.8 stops at 89: it cannot compile this llama.cpp for sm_90."""
    v = Version(toolkit or "12.4")
    archs: list[str] = []
    if v < Version("13"):
        archs += ["50-virtual", "61-virtual", "70-virtual"]
    archs += ["75-virtual", "80-virtual", "86-real"]
    if v >= Version("11.8"):
        archs += ["89-real"]
    if v >= Version("12"):
        archs += ["90-virtual"]
    if v >= Version("12.8"):
        archs += ["120a-real"]
    if v >= Version("12.9"):
        archs += ["121a-real"]
    return tuple(archs)


@dataclass(frozen=True)
class Toolkit:
    nvcc: Program
    root: Path
    missing: tuple[str, ...]


def toolkits(ctx: BackendContext) -> list[Toolkit]:
    """Every nvcc whose version fits the target, in discovery order, with what its toolkit
    lacks for a build (cuBLAS, the static runtime, a libcuda stub, ...)."""
    spec = SpecifierSet(ctx.requirement("nvcc") or f"=={toolkit_major(ctx.toolkit)}.*")
    found: list[Toolkit] = []
    for prog in discovery.find_all("nvcc"):
        if prog.version is None or not spec.contains(prog.version, prereleases=True):
            continue
        root = toolkit_root(prog.path)
        found.append(Toolkit(prog, root, tuple(missing_parts(root))))
    return found


def choose(ctx: BackendContext) -> Toolkit | None:
    """The first complete toolkit of the right version."""
    return next((t for t in toolkits(ctx) if not t.missing), None)


def _installer(version: str) -> Callable[[Progress], Path]:
    def install(progress: Progress) -> Path:
        return cuda_toolkit.install(version, progress)
    return install


def _installed(name: str) -> Callable[[], Path | None]:
    def installed() -> Path | None:
        prefix = toolchains_dir() / name
        # an install that predates a part a build now needs (cuobjdump) is installed again
        return prefix if prefix.exists() and not missing_parts(prefix) else None
    return installed


def nvcc_candidates() -> list[Path]:
    """nvcc in ranked order: $CUDA_HOME/$CUDA_PATH (the user said so), toolkits buildtool
    provisioned, NVIDIA's /usr/local/cuda[-X.Y], PyPI's nvidia/cu* trees in this Python's
    site-packages, Debian's nvidia-cuda-toolkit; PATH comes after all of them."""
    roots = [Path(r) for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if r]
    roots += sorted(toolchains_dir().glob("cuda-*"), key=version_key, reverse=True)
    roots.append(Path("/usr/local/cuda"))
    roots += sorted(Path("/usr/local").glob("cuda-*"), key=version_key, reverse=True)
    for entry in sys.path:
        if entry and Path(entry).name in ("site-packages", "dist-packages"):
            roots += sorted(Path(entry).glob("nvidia/cu[0-9]*"), key=version_key, reverse=True)
    found = [r / "bin" / "nvcc" for r in roots]
    found.append(Path("/usr/lib/nvidia-cuda-toolkit/bin/nvcc"))
    return found


def cuobjdump_for(nvcc: str | Path | None) -> Path | None:
    """The cuobjdump of the toolkit whose nvcc built the artifact, else one on PATH."""
    if nvcc:
        beside = Path(nvcc).parent / "cuobjdump"
        if beside.is_file() and os.access(beside, os.X_OK):
            return beside
    found = discovery.best("cuobjdump")
    return found.path if found else None


INSTALL_CUOBJDUMP = "cuobjdump comes with NVIDIA's CUDA toolkit and Debian's " \
    "nvidia-cuda-toolkit; `buildtool toolchain install cuda-X.Y` includes it"


class CudaBackend(Backend):
    family = "cuda"
    finders = MappingProxyType({
        "nvcc": ToolSpec(("nvcc",), version_pattern=r"release (\d+\.\d+)",
                         install="a CUDA toolkit: NVIDIA's installer, or Debian's "
                                 "nvidia-cuda-toolkit", places=nvcc_candidates),
        "cuobjdump": ToolSpec(("cuobjdump",), version_pattern=r"release (\d+\.\d+)",
                              install=INSTALL_CUOBJDUMP,
                              places=lambda: [p.parent / "cuobjdump"
                                              for p in nvcc_candidates()]),
    })
    tools = ("nvcc",)
    compiler_languages = ("CUDA",)
    ci_container = True
    module_file = "libggml-cuda.so"
    gpu_vendors = ("NVIDIA",)

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return default_archs(toolkit)

    def tool_unusable(self, program: Program) -> str | None:
        if program.name != "nvcc":
            return None
        missing = missing_parts(toolkit_root(program.path))
        return f"its toolkit lacks {', '.join(missing)}" if missing else None

    def device_code(self, files: Sequence[Path], *, tools: Mapping[str, Mapping[str, Any]],
                    toolkit: str | None, gpu_archs: Sequence[str]) -> DeviceCodeRecord | None:
        nvcc = (tools.get("nvcc") or {}).get("path")
        cuobjdump = cuobjdump_for(nvcc)
        if cuobjdump is None:
            return DeviceCodeRecord(verdict="skipped", toolkit=toolkit,
                                    reason="cuobjdump not found here: " + INSTALL_CUOBJDUMP)
        version = discovery.version_of("cuobjdump", cuobjdump)
        return cuda_devicecode.audit(
            files, cuobjdump=cuobjdump, tool=f"cuobjdump {version or '?'} at {cuobjdump}",
            toolkit=toolkit, gpu_archs=gpu_archs)

    def device_fit(self, record: DeviceCodeRecord | None,
                   gpus: Sequence[GpuRecord]) -> str | None:
        if record is None or record.verdict != "pass":
            return None
        known = [g for g in gpus if g.vendor == "NVIDIA" and g.compute_capability]
        if not known:
            return None  # no NVIDIA GPU here, or an old driver: the smoke's device check says
        code = record.code
        if any(cuda_devicecode.coverage(code, g.compute_capability or "") for g in known):
            return None
        listed = ", ".join(f"{g.name} (compute capability {g.compute_capability})"
                           for g in known)
        return (f"no device code for {listed}: the artifact carries "
                f"{cuda_devicecode.describe(code)} (\"no kernel image is available for "
                "execution on the device\")")

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        return {"CUDA_VERSION": toolkit or "",
                "CUDA_ARCHITECTURES": define("CMAKE_CUDA_ARCHITECTURES") or ""}

    def toolchains(self) -> tuple[Toolchain, ...]:
        return tuple(Toolchain(name=kit.name, install=_installer(version),
                               installed=_installed(kit.name))
                     for version, kit in cuda_toolkit.KITS.items())

    def toolchain_for(self, toolkit: str | None) -> str | None:
        return f"cuda-{toolkit}" if toolkit in cuda_toolkit.KITS else None

    def host_fit(self, host: HostFacts) -> str | None:
        return None if host.devices.get("/dev/nvidiactl") or has_gpu(host, "NVIDIA") \
            else "no NVIDIA GPU"

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        present = exists("/dev/nvidiactl")
        return Devices(nvidia=present, absent=() if present else ("/dev/nvidiactl",))

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        chosen = choose(ctx) if ctx.probe else None
        if chosen is not None:
            root, nvcc = chosen.root, chosen.nvcc.path
            why = f"CUDA {chosen.nvcc.version} toolkit found at {chosen.root}"
        else:
            root = Path(f"/usr/local/cuda-{ctx.toolkit}")
            nvcc = root / "bin" / "nvcc"
            why = f"conventional location of CUDA {ctx.toolkit} (not found on this host)"
        defines = [
            # Always explicit: CMake otherwise picks whatever nvcc is first on PATH.
            ("CMAKE_CUDA_COMPILER", str(nvcc), why),
            ("CUDAToolkit_ROOT", str(root), why),
            ("CMAKE_CUDA_ARCHITECTURES", ";".join(ctx.gpu_archs), "gpu-archs"),
        ]
        host_only = {"CMAKE_CUDA_COMPILER", "CUDAToolkit_ROOT"}
        if toolkit_major(ctx.toolkit) <= 11 and ctx.platform.startswith("linux"):
            gxx = find_tool("g++-11") if ctx.probe else None
            defines.append(("CMAKE_CUDA_HOST_COMPILER", str(gxx.path) if gxx else "g++-11",
                            "nvcc 11.x accepts g++ <= 11 only"))
            if gxx is not None:
                host_only.add("CMAKE_CUDA_HOST_COMPILER")
        return Dynamic(defines=tuple(defines), host_only=frozenset(host_only))

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        problems: list[Problem] = []
        found = toolkits(ctx)
        if found and not any(not t.missing for t in found):
            lacking = "; ".join(f"{t.root} lacks {', '.join(t.missing)}" for t in found)
            problems.append(Problem(
                f"no complete CUDA {ctx.toolkit} toolkit: {lacking}",
                f"`buildtool toolchain install cuda-{ctx.toolkit}` assembles a complete one "
                "privately, or install NVIDIA's toolkit with cuBLAS"))
        if toolkit_major(ctx.toolkit) <= 11 and ctx.platform.startswith("linux") \
                and find_tool("g++-11") is None:
            problems.append(Problem("CUDA 11.x needs a host compiler g++ <= 11 (g++-11 not found)",
                                    "apt-get install g++-11"))
        return problems


BACKEND = CudaBackend()
