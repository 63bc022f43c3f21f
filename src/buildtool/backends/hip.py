"""AMD ROCm / HIP (hipblas)."""

from __future__ import annotations

from collections.abc import Callable

from buildtool import cmd
from buildtool.backends.base import Backend, BackendContext, Dynamic, find_tool
from buildtool.errors import CommandError, ToolchainError
from buildtool.records import HostFacts
from buildtool.toolchains.engines import Devices


class HipBackend(Backend):
    family = "hip"
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

