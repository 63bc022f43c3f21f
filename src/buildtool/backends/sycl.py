"""Intel oneAPI / SYCL (intel)."""

from __future__ import annotations

import os
from collections.abc import Callable

from buildtool.backends.base import Backend, BackendContext, Problem, find_tool, has_gpu
from buildtool.records import HostFacts
from buildtool.toolchains.engines import Devices


class SyclBackend(Backend):
    family = "sycl"
    tools = ("icpx",)
    ci_container = True
    wheels_in_container = True
    module_file = "libggml-sycl.so"
    gpu_vendors = ("Intel",)

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        return {"ONEAPI_VERSION": toolkit or ""}

    def host_fit(self, host: HostFacts) -> str | None:
        return None if has_gpu(host, "Intel") else "no Intel GPU"

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        return _dri(exists)

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        if "ONEAPI_ROOT" in os.environ or "SETVARS_COMPLETED" in os.environ:
            return []
        setvars = find_tool("oneapi")
        if setvars is None:   # the recipe's `oneapi` requirement already says what to install
            return []
        return [Problem(f"oneAPI {setvars.version or ''} is installed but its environment is "
                        "not loaded (ONEAPI_ROOT unset; icpx needs it to find its runtime and "
                        "oneMKL)".replace("  ", " "),
                        f"run `source {setvars.path}` before buildtool")]


def _dri(exists: Callable[[str], bool]) -> Devices:
    present = exists("/dev/dri")
    return Devices(paths=("/dev/dri",) if present else (),
                   absent=() if present else ("/dev/dri",))
