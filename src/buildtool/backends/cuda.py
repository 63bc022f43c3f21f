"""NVIDIA CUDA (cublas11, cublas12, cublas13...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool
from buildtool.backends.cuda_toolkit import missing_parts, toolkit_root
from buildtool.toolchains import discovery as toolchain


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


def toolkit_major(toolkit: str | None) -> int:
    return Version(toolkit or "12.4").major


@dataclass(frozen=True)
class Toolkit:
    nvcc: toolchain.Program
    root: Path
    missing: tuple[str, ...]


def toolkits(ctx: BackendContext) -> list[Toolkit]:
    """Every nvcc whose version fits the target, in discovery order, with what its toolkit
    lacks for a build (cuBLAS, the static runtime, a libcuda stub, ...)."""
    spec = SpecifierSet(ctx.requirement("nvcc") or f"=={toolkit_major(ctx.toolkit)}.*")
    found: list[Toolkit] = []
    for prog in toolchain.find_all("nvcc"):
        if prog.version is None or not spec.contains(prog.version, prereleases=True):
            continue
        root = toolkit_root(prog.path)
        found.append(Toolkit(prog, root, tuple(missing_parts(root))))
    return found


def choose(ctx: BackendContext) -> Toolkit | None:
    """The first complete toolkit of the right version."""
    return next((t for t in toolkits(ctx) if not t.missing), None)


class CudaBackend:
    family = "cuda"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return default_archs(toolkit)

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
        if toolkit_major(ctx.toolkit) <= 11 and ctx.platform.startswith("linux"):
            gxx = find_tool("g++-11") if ctx.probe else None
            defines.append(("CMAKE_CUDA_HOST_COMPILER", str(gxx.path) if gxx else "g++-11",
                            "nvcc 11.x accepts g++ <= 11 only"))
        return Dynamic(defines=tuple(defines))

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
