"""Vulkan (any GPU with a Vulkan driver; Mesa's lavapipe on CPU-only hosts)."""

from __future__ import annotations

from pathlib import Path

from buildtool.backends.base import BackendContext, Dynamic, Problem, find_tool

# bookworm's 1.3.239 headers fail ("'LayerSettingEXT' is not a member of 'vk'");
# trixie's 1.4.309 work. The requirement lives in recipes/vulkan.yaml.
HEADERS = "vulkan-headers"


class VulkanBackend:
    family = "vulkan"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        headers = find_tool(HEADERS, ctx.requirement(HEADERS)) if ctx.probe else None
        if headers is None or headers.path == Path("/usr/include"):
            return Dynamic()
        return Dynamic(defines=(("Vulkan_INCLUDE_DIR", str(headers.path),
                                 f"Vulkan headers {headers.version}"),))

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        return []
