"""Backend families: one module each, behind :class:`BackendModule`, listed in ``REGISTRY``.

Adding a backend means adding one module here and one ``recipes/<name>.yaml``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from buildtool.backends import cpu, cuda, hip, metal, sycl, vulkan
from buildtool.backends.base import BackendContext, BackendModule, Problem

REGISTRY: Final[MappingProxyType[str, BackendModule]] = MappingProxyType({
    "cpu": cpu.CpuBackend(),
    "cuda": cuda.CudaBackend(),
    "hip": hip.HipBackend(),
    "sycl": sycl.SyclBackend(),
    "vulkan": vulkan.VulkanBackend(),
    "metal": metal.MetalBackend(),
})

__all__ = ["REGISTRY", "BackendContext", "BackendModule", "Problem"]
