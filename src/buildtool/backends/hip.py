"""AMD ROCm / HIP (hipblas)."""

from __future__ import annotations

from buildtool import cmd
from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool
from buildtool.errors import CommandError, ToolchainError


class HipBackend:
    family = "hip"

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

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        return []
