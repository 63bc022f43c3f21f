"""NVIDIA CUDA (cublas11, cublas12, cublas13...)."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool


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


class CudaBackend:
    family = "cuda"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return default_archs(toolkit)

    def _nvcc(self, ctx: BackendContext) -> Path | None:
        if not ctx.probe:
            return None
        found = find_tool("nvcc", f"=={toolkit_major(ctx.toolkit)}.*")
        return found.path if found else None

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        nvcc = self._nvcc(ctx)
        if nvcc is not None:
            root = nvcc.parent.parent
            why = f"found nvcc for CUDA {ctx.toolkit}"
        else:
            root = Path(f"/usr/local/cuda-{ctx.toolkit}")
            why = f"conventional location of CUDA {ctx.toolkit} (not found on this host)"
        defines = [
            # Always explicit: CMake otherwise picks whatever nvcc is first on PATH.
            ("CMAKE_CUDA_COMPILER", str(root / "bin" / "nvcc"), why),
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
        if toolkit_major(ctx.toolkit) <= 11 and ctx.platform.startswith("linux") \
                and find_tool("g++-11") is None:
            problems.append(Problem("CUDA 11.x needs a host compiler g++ <= 11 (g++-11 not found)",
                                    "apt-get install g++-11"))
        return problems
