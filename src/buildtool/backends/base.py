"""The small protocol each backend family implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from buildtool.toolchains import discovery as toolchain


@dataclass(frozen=True, kw_only=True)
class BackendContext:
    """What a backend needs to know to add its dynamic settings."""

    target: str
    platform: str
    toolkit: str | None
    gpu_archs: tuple[str, ...]
    probe: bool = True  # look for tools on this host (False: plan with conventional paths)
    requires: tuple[tuple[str, str], ...] = ()  # (tool, PEP 440 range) from the recipes

    def requirement(self, tool: str) -> str:
        return next((spec for name, spec in self.requires if name == tool), "")


@dataclass(frozen=True)
class Problem:
    """Why a target cannot be built here, and what to do about it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} — {self.fix}"


@dataclass(frozen=True)
class Dynamic:
    """Settings a backend computes: (name, value, why) defines and environment."""

    defines: tuple[tuple[str, str, str], ...] = ()
    env: tuple[tuple[str, str, str], ...] = ()
    default_archs: tuple[str, ...] = ()


class BackendModule(Protocol):
    family: str

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        """GPU architectures built when neither matrix nor recipe names any."""
        ...

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        """Defines and environment that depend on the toolkit, archs or host."""
        ...

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        """Problems that stop a build on this host before CMake runs (beyond recipe tools)."""
        ...


def find_tool(name: str, specifier: str = "") -> toolchain.Program | None:
    return toolchain.best(name, specifier)
