"""What a backend family is: the protocol every family module implements, and defaults.

A family module owns everything buildtool knows about its backend beyond its recipe: the
settings it computes for CMake, what stops a build here, the tools whose versions an
artifact records, the toolchains it can provision, how CI builds it, which module a
``GGML_BACKEND_DL`` build loads, how a smoke test tells that it ran, which hosts can run it,
which devices a container needs, which GPU vendors it serves and the build arguments of its
image. Code outside ``backends/`` asks the family (``REGISTRY[family]``) and never tests a
family's name.

May import: the foundation modules, detect and toolchains. Never config, artifacts, verify,
the build pipeline, release, lab or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from buildtool.records import DeviceCodeRecord, GpuRecord, HostFacts
from buildtool.toolchains import discovery
from buildtool.toolchains.discovery import Program, ToolSpec
from buildtool.toolchains.engines import Devices

Progress = Callable[[str], None]
Installer = Callable[[Progress], Path]


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
class Bundle:
    """A vendor runtime a tarball ships beside the programs (the libraries the backend module
    loads, from the toolchain it was built with) and its license files, as
    (path in the artifact below licenses/<name>/, file)."""

    name: str
    version: str
    files: tuple[Path, ...]
    licenses: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class Dynamic:
    """Settings a backend computes: (name, value, why) defines and environment. Defines
    whose value only holds on this machine (a toolkit's path) are named in ``host_only``:
    an emitted project or an image's build stage leaves them to the machine that builds.
    ``runtime``: what a tarball must bundle to run without the toolchain."""

    defines: tuple[tuple[str, str, str], ...] = ()
    env: tuple[tuple[str, str, str], ...] = ()
    host_only: frozenset[str] = frozenset()
    runtime: tuple[Bundle, ...] = ()


@dataclass(frozen=True)
class Toolchain:
    """A toolchain the family can assemble privately (``buildtool toolchain install``)."""

    name: str
    install: Installer
    installed: Callable[[], Path | None]


class BackendModule(Protocol):
    @property
    def family(self) -> str: ...

    # --- building -------------------------------------------------------------------
    @property
    def finders(self) -> Mapping[str, ToolSpec]:
        """How to find the tools only this family needs (registered with discovery)."""
        ...

    @property
    def tools(self) -> tuple[str, ...]:
        """Tools whose versions the manifest records (nvcc, glslc, ...)."""
        ...

    @property
    def compiler_languages(self) -> tuple[str, ...]:
        """Compiler launchers (ccache) beyond C and CXX: CUDA."""
        ...

    @property
    def platform_hint(self) -> str:
        """Where a target of this family builds, when this host cannot ('' : the default)."""
        ...

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        """GPU architectures built when neither matrix nor recipe names any."""
        ...

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        """Defines and environment that depend on the toolkit, archs or host."""
        ...

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        """Problems that stop a build on this host before CMake runs (beyond recipe tools)."""
        ...

    def tool_unusable(self, program: Program) -> str | None:
        """Why a found tool cannot serve this family (a CUDA toolkit without cuBLAS)."""
        ...

    def device_code(self, files: Sequence[Path], *, tools: Mapping[str, Mapping[str, Any]],
                    toolkit: str | None, gpu_archs: Sequence[str]) -> DeviceCodeRecord | None:
        """The device code the shipped ``files`` carry, held against ``gpu_archs`` (None: the
        family compiles no device code ahead of time)."""
        ...

    def device_fit(self, record: DeviceCodeRecord | None,
                   gpus: Sequence[GpuRecord]) -> str | None:
        """Why none of ``gpus`` can run the artifact's device code (None: one can, or it
        cannot be known)."""
        ...

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        """The family's build arguments of its Dockerfile (CUDA_VERSION, ...)."""
        ...

    def toolchains(self) -> tuple[Toolchain, ...]:
        """What ``buildtool toolchain install`` can assemble for this family (the names it
        lists)."""
        ...

    def toolchain(self, name: str) -> Toolchain | None:
        """The toolchain called ``name``, also one it does not list (any version of a
        package index's runtime: ``openvino-2026.4.1``)."""
        ...

    def toolchain_for(self, toolkit: str | None) -> str | None:
        """The toolchain a target of this family needs (``cuda-12.4``), if provisionable."""
        ...

    # --- CI ---------------------------------------------------------------------------
    @property
    def ci_container(self) -> bool:
        """Built in its vendor's container in CI (no GPU there: no smoke test)."""
        ...

    @property
    def wheel_oses(self) -> tuple[str, ...]:
        """The OSes CI builds its wheels on."""
        ...

    @property
    def ci_builds_on_target(self) -> bool:
        """Its CI runner is the hardware it targets: a 'host' CPU policy stays (elsewhere
        release builds are made portable: all CPU variants)."""
        ...

    @property
    def wheels_in_container(self) -> bool:
        """Its Linux wheels are built in the vendor image (not by cibuildwheel)."""
        ...

    @property
    def cross_compiles(self) -> bool:
        """It builds for another Linux architecture on this host (clang and a sysroot:
        :mod:`buildtool.toolchains.cross`); its toolkit would otherwise have to be in the
        sysroot too."""
        ...

    # --- running ------------------------------------------------------------------------
    @property
    def module_file(self) -> str | None:
        """The backend module a GGML_BACKEND_DL build loads at run time."""
        ...

    @property
    def gpu_vendors(self) -> tuple[str, ...]:
        """The GPU vendors it serves (PCI vendor names, as detection reports them)."""
        ...

    @property
    def gpu_preference(self) -> int:
        """When several families serve a GPU, the lowest goes first (the vendor's own)."""
        ...

    @property
    def software_devices(self) -> tuple[str, ...]:
        """Devices that are CPUs behind the backend's API (Mesa's lavapipe)."""
        ...

    def ran(self, reported: set[str], backend: str) -> tuple[bool, str]:
        """Whether llama-bench's ``backends`` show this family ran, and what was wanted."""
        ...

    def host_fit(self, host: HostFacts) -> str | None:
        """Why ``host`` cannot run this family's artifacts (None: it can)."""
        ...

    def only_software(self, host: HostFacts) -> str | None:
        """What says that the only device ``host`` has for this family is a software
        renderer (Mesa's lavapipe for Vulkan): it runs the artifact, but no faster than the
        CPU. None: a real device, or a family without one."""
        ...

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        """What a container needs to reach this family's devices."""
        ...


class Backend:
    """Defaults: a family that needs nothing beyond its recipe."""

    family = ""
    finders: Mapping[str, ToolSpec] = MappingProxyType({})
    tools: tuple[str, ...] = ()
    compiler_languages: tuple[str, ...] = ()
    platform_hint = ""
    ci_container = False
    wheel_oses: tuple[str, ...] = ("linux",)
    wheels_in_container = False
    ci_builds_on_target = False
    cross_compiles = False
    module_file: str | None = None
    gpu_vendors: tuple[str, ...] = ()
    gpu_preference = 0
    software_devices: tuple[str, ...] = ()

    def default_archs(self, toolkit: str | None) -> tuple[str, ...]:
        return ()

    def dynamic(self, ctx: BackendContext) -> Dynamic:
        return Dynamic()

    def preflight(self, ctx: BackendContext) -> list[Problem]:
        return []

    def tool_unusable(self, program: Program) -> str | None:
        return None

    def device_code(self, files: Sequence[Path], *, tools: Mapping[str, Mapping[str, Any]],
                    toolkit: str | None, gpu_archs: Sequence[str]) -> DeviceCodeRecord | None:
        return None

    def device_fit(self, record: DeviceCodeRecord | None,
                   gpus: Sequence[GpuRecord]) -> str | None:
        return None

    def image_args(self, toolkit: str | None,
                   define: Callable[[str], str | None]) -> dict[str, str]:
        return {}

    def toolchains(self) -> tuple[Toolchain, ...]:
        return ()

    def toolchain(self, name: str) -> Toolchain | None:
        return next((t for t in self.toolchains() if t.name == name), None)

    def toolchain_for(self, toolkit: str | None) -> str | None:
        return None

    def ran(self, reported: set[str], backend: str) -> tuple[bool, str]:
        return backend in reported, backend

    def host_fit(self, host: HostFacts) -> str | None:
        return None

    def only_software(self, host: HostFacts) -> str | None:
        return None

    def container_devices(self, exists: Callable[[str], bool]) -> Devices:
        return Devices()


def find_tool(name: str, specifier: str = "") -> Program | None:
    return discovery.best(name, specifier)


def has_gpu(host: HostFacts, vendor: str) -> bool:
    return any(g.vendor == vendor for g in host.gpus)
