"""Intel oneAPI / SYCL (intel)."""

from __future__ import annotations

import os

from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool


class SyclBackend:
    family = "sycl"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        return Dynamic()

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
