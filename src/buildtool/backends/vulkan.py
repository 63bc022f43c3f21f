"""Vulkan (any GPU with a Vulkan driver; Mesa's lavapipe on CPU-only hosts)."""

from __future__ import annotations

import os
from pathlib import Path

from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool

# bookworm's 1.3.239 headers fail ("'LayerSettingEXT' is not a member of 'vk'");
# trixie's 1.4.309 work. The requirement lives in recipes/vulkan.yaml.
HEADERS = "vulkan-headers"
SYSTEM_SPIRV_DIRS = [Path("/usr/share/cmake/SPIRV-Headers"),
                     Path("/usr/lib/x86_64-linux-gnu/cmake/SPIRV-Headers"),
                     Path("/usr/lib/aarch64-linux-gnu/cmake/SPIRV-Headers")]


class VulkanBackend:
    family = "vulkan"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        headers = find_tool(HEADERS, ctx.requirement(HEADERS)) if ctx.probe else None
        if headers is None or headers.path == Path("/usr/include"):
            return Dynamic()
        defines = [("Vulkan_INCLUDE_DIR", str(headers.path), f"Vulkan headers {headers.version}")]
        spirv = spirv_headers_dir(headers.path)
        if spirv is not None and spirv.parent.parent.parent != Path("/usr"):
            defines.append(("SPIRV-Headers_DIR", str(spirv), "SPIRV-Headers beside the headers"))
        return Dynamic(defines=tuple(defines))

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        headers = find_tool(HEADERS, ctx.requirement(HEADERS))
        if headers is not None and spirv_headers_dir(headers.path) is None:
            return [Problem("ggml-vulkan needs SPIRV-Headers' CMake package "
                            "(SPIRV-HeadersConfig.cmake): not found",
                            "apt-get install spirv-headers (Debian trixie, Ubuntu 24.04), or "
                            "`buildtool toolchain install vulkan-headers`")]
        return []


def spirv_headers_dir(include: Path) -> Path | None:
    """SPIRV-Headers' CMake package next to these headers, in $VULKAN_SDK, or the system's."""
    prefix = include.parent
    candidates = [prefix / "share/cmake/SPIRV-Headers", prefix / "lib/cmake/SPIRV-Headers"]
    if os.environ.get("VULKAN_SDK"):
        sdk = Path(os.environ["VULKAN_SDK"])
        candidates += [sdk / "share/cmake/SPIRV-Headers", sdk / "lib/cmake/SPIRV-Headers"]
    candidates += SYSTEM_SPIRV_DIRS
    return next((c for c in candidates if (c / "SPIRV-HeadersConfig.cmake").is_file()), None)
