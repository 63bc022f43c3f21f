"""Backend families: one module each, behind :class:`BackendModule`, gathered in ``REGISTRY``.

Adding a backend means adding one module here (any module of this package with a ``BACKEND``
is a family) and one ``recipes/<name>.yaml``; everything buildtool knows about a family
beyond its recipe is in its module (see :mod:`buildtool.backends.base`), including how to
find the tools only it needs (registered with discovery here).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType
from typing import Final

from buildtool.backends.base import (
    Backend,
    BackendContext,
    BackendModule,
    Problem,
    Toolchain,
)
from buildtool.toolchains import discovery
from buildtool.toolchains.engines import Devices


def _discover() -> dict[str, BackendModule]:
    found: dict[str, BackendModule] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        backend: BackendModule | None = getattr(module, "BACKEND", None)
        if backend is None:
            continue
        if backend.family in found:
            raise RuntimeError(f"backend family '{backend.family}' is defined twice")
        found[backend.family] = backend
        for tool, spec in backend.finders.items():
            discovery.register(tool, spec)
    return found


REGISTRY: Final[MappingProxyType[str, BackendModule]] = MappingProxyType(_discover())


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
    """Every toolchain any family lists, by name."""
    return {t.name: t for b in REGISTRY.values() for t in b.toolchains()}


def toolchain(name: str) -> Toolchain | None:
    """The toolchain called ``name``, from the family that provides it."""
    return next((t for b in REGISTRY.values() if (t := b.toolchain(name)) is not None), None)


__all__ = ["REGISTRY", "BackendContext", "BackendModule", "Devices", "Problem", "Toolchain",
           "family", "toolchain", "toolchains"]
