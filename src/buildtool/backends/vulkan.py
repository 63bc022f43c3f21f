"""Vulkan (any GPU with a Vulkan driver; Mesa's lavapipe on CPU-only hosts)."""

from __future__ import annotations

from buildtool.backends.base import BackendContext, Dynamic, Problem


class VulkanBackend:
    family = "vulkan"

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        return Dynamic()

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        return []
