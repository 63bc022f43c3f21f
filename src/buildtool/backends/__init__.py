"""Backend families: one module each, behind :class:`BackendModule`, listed in ``REGISTRY``.

Adding a backend means adding one module here (registered below) and one
``recipes/<name>.yaml``; everything buildtool knows about a family beyond its recipe is in its
module (see :mod:`buildtool.backends.base`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from buildtool.backends import cpu, cuda, hip, metal, sycl, vulkan
from buildtool.backends.base import (
    Backend,
    BackendContext,
    BackendModule,
    Problem,
    Toolchain,
)
from buildtool.toolchains.engines import Devices

REGISTRY: Final[MappingProxyType[str, BackendModule]] = MappingProxyType({
    "cpu": cpu.CpuBackend(),
    "cuda": cuda.CudaBackend(),
    "hip": hip.HipBackend(),
    "sycl": sycl.SyclBackend(),
    "vulkan": vulkan.VulkanBackend(),
    "metal": metal.MetalBackend(),
})


class _Unknown(Backend):
    """A family this buildtool does not know (an artifact from a newer one): no special
    rules, the backend's name must simply appear in what llama-bench reports."""

    def __init__(self, family: str) -> None:
        self.family = family


def family(name: str) -> BackendModule:
    """The family module of ``name``; for a name from an artifact that this buildtool does
    not know, the neutral defaults."""
    return REGISTRY.get(name) or _Unknown(name)


def toolchains() -> dict[str, Toolchain]:
    """Every toolchain any family can provision, by name."""
    return {t.name: t for b in REGISTRY.values() for t in b.toolchains()}


__all__ = ["REGISTRY", "BackendContext", "BackendModule", "Devices", "Problem", "Toolchain",
           "family", "toolchains"]
