"""Intel oneAPI / SYCL (intel)."""

from __future__ import annotations

import os

from buildtool.backends.base import BackendContext, Dynamic, Problem


class SyclBackend:
    family = "sycl"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        return Dynamic()

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        if "ONEAPI_ROOT" not in os.environ and "SETVARS_COMPLETED" not in os.environ:
            return [Problem("the oneAPI environment is not loaded (ONEAPI_ROOT unset)",
                            "run `source /opt/intel/oneapi/setvars.sh` before buildtool")]
        return []
