"""Intel oneAPI / SYCL (intel)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

from packaging.version import Version

from buildtool.backends.base import Backend, BackendContext, Problem, find_tool, has_gpu
from buildtool.records import HostFacts
from buildtool.toolchains.discovery import Program, ToolSpec
from buildtool.toolchains.engines import Devices

VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?")


def oneapi_roots() -> list[Path]:
    """oneAPI installations: $ONEAPI_ROOT, /opt/intel/oneapi, ~/intel/oneapi."""
    roots = [Path(os.environ["ONEAPI_ROOT"])] if os.environ.get("ONEAPI_ROOT") else []
    roots += [Path("/opt/intel/oneapi"), Path.home() / "intel" / "oneapi"]
    return list(dict.fromkeys(roots))


def setvars() -> Iterator[Program]:
    """oneAPI's setvars.sh; the version is the compiler's (compiler/latest → 2025.1 ...)."""
    for root in oneapi_roots():
        script = root / "setvars.sh"
        if not script.is_file():
            continue
        versions = [p.resolve().name for p in (root / "compiler").glob("*")
                    if p.is_dir() and VERSION_RE.fullmatch(p.resolve().name)]
        version = max((Version(v) for v in versions), default=None)
        yield Program("oneapi", script, version)


def _in_oneapi(name: str) -> Callable[[], list[Path]]:
    return lambda: [r / "compiler" / "latest" / "bin" / name for r in oneapi_roots()]


_SETVARS = "Intel oneAPI Base Toolkit; then `source /opt/intel/oneapi/setvars.sh`"


class SyclBackend(Backend):
    family = "sycl"
    finders = MappingProxyType({
        "icpx": ToolSpec(("icpx",), install=_SETVARS, places=_in_oneapi("icpx")),
        "icx": ToolSpec(("icx",), install=_SETVARS, places=_in_oneapi("icx")),
        "oneapi": ToolSpec((), install="Intel oneAPI Base Toolkit (DPC++ compiler and oneMKL), "
                           "which provides setvars.sh, or the intel/oneapi-basekit image",
                           find=setvars),
    })
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


BACKEND = SyclBackend()
