"""Find tools as ranked candidates with versions (after scikit-build-core's program_search).

Each tool has a list of candidate paths in order of preference; every candidate that exists
is probed for its version; :func:`best` returns the first one whose version satisfies a
PEP 440 specifier set. Results are cached per process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from buildtool import cmd
from buildtool.errors import CommandError, ToolchainError

_VERSION_RE = re.compile(r"(\d+\.\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Program:
    name: str
    path: Path
    version: Version | None

    def describe(self) -> str:
        return f"{self.name} {self.version or '(version unknown)'} at {self.path}"


@dataclass(frozen=True)
class ToolSpec:
    """How to find one tool: executable names, extra directories, how to read its version."""

    names: tuple[str, ...]
    version_args: tuple[str, ...] = ("--version",)
    version_pattern: str | None = None
    install: str = ""


def _python_package_bin(module: str, attr: str) -> list[Path]:
    try:
        mod = __import__(module)
    except ImportError:
        return []
    value = getattr(mod, attr, None)
    return [Path(value)] if value else []


TOOLS: dict[str, ToolSpec] = {
    "cmake": ToolSpec(("cmake",), install="pip install cmake (a dependency of buildtool)"),
    "ninja": ToolSpec(("ninja",), install="pip install ninja (a dependency of buildtool)"),
    "cc": ToolSpec(("cc", "gcc", "clang"), install="apt-get install build-essential"),
    "cxx": ToolSpec(("c++", "g++", "clang++"), install="apt-get install build-essential"),
    "ccache": ToolSpec(("ccache",), install="apt-get install ccache"),
    "nvcc": ToolSpec(("nvcc",), version_pattern=r"release (\d+\.\d+)",
                     install="a CUDA toolkit: NVIDIA's installer, or Debian's nvidia-cuda-toolkit"),
    "hipcc": ToolSpec(("hipcc",), version_pattern=r"HIP version: (\d+\.\d+)",
                      install="ROCm with hipBLAS/rocBLAS (https://rocm.docs.amd.com)"),
    "hipconfig": ToolSpec(("hipconfig",), install="ROCm (hipconfig ships with HIP)"),
    "icpx": ToolSpec(("icpx",), install="Intel oneAPI Base Toolkit; then `source "
                     "/opt/intel/oneapi/setvars.sh`"),
    "icx": ToolSpec(("icx",), install="Intel oneAPI Base Toolkit; then `source "
                    "/opt/intel/oneapi/setvars.sh`"),
    "glslc": ToolSpec(("glslc",), version_pattern=r"glslang (\d+\.\d+)",
                      install="apt-get install glslc libvulkan-dev"),
    "vulkan-headers": ToolSpec((), install="`buildtool toolchain install vulkan-headers` "
                               "(Debian trixie's libvulkan-dev, into a private prefix), or the "
                               "LunarG Vulkan SDK ($VULKAN_SDK)"),
    "hipblas": ToolSpec((), install="ROCm's hipblas-dev (and rocblas-dev), e.g. "
                        "`apt-get install hipblas-dev` from AMD's repository, or the "
                        "rocm/dev-ubuntu image"),
    "rocblas": ToolSpec((), install="ROCm's rocblas-dev, or the rocm/dev-ubuntu image"),
    "oneapi": ToolSpec((), install="Intel oneAPI Base Toolkit (DPC++ compiler and oneMKL), "
                       "which provides setvars.sh, or the intel/oneapi-basekit image"),
    "xcrun": ToolSpec(("xcrun",), version_pattern=r"version (\d+)",
                      install="Xcode command line tools (xcode-select --install); Metal needs a "
                              "macOS host"),
}


def _nvcc_candidates() -> list[Path]:
    """nvcc in ranked order: $CUDA_HOME/$CUDA_PATH (the user said so), toolkits buildtool
    provisioned, NVIDIA's /usr/local/cuda[-X.Y], PyPI's nvidia/cu* trees in this Python's
    site-packages, Debian's nvidia-cuda-toolkit; PATH comes after all of them."""
    from buildtool.paths import cache_dir

    roots = [Path(r) for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if r]
    roots += sorted((cache_dir() / "toolchains").glob("cuda-*"), key=_version_key, reverse=True)
    roots.append(Path("/usr/local/cuda"))
    roots += sorted(Path("/usr/local").glob("cuda-*"), key=_version_key, reverse=True)
    for entry in sys.path:
        if entry and Path(entry).name in ("site-packages", "dist-packages"):
            roots += sorted(Path(entry).glob("nvidia/cu[0-9]*"), key=_version_key, reverse=True)
    found = [r / "bin" / "nvcc" for r in roots]
    found.append(Path("/usr/lib/nvidia-cuda-toolkit/bin/nvcc"))
    return found


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name)) or (0,)


def _candidates(name: str, spec: ToolSpec) -> Iterator[Path]:
    seen: set[Path] = set()
    extra: list[Path] = []
    if name == "cmake":
        extra = [p / "cmake" for p in _python_package_bin("cmake", "CMAKE_BIN_DIR")]
    elif name == "ninja":
        extra = [p / "ninja" for p in _python_package_bin("ninja", "BIN_DIR")]
    elif name == "nvcc":
        extra = _nvcc_candidates()
    elif name in ("hipcc", "hipconfig"):
        extra = [r / "bin" / name for r in rocm_roots()]
    elif name in ("icpx", "icx"):
        extra = [r / "compiler" / "latest" / "bin" / name for r in oneapi_roots()]
    # The PyPI packages' binaries are preferred (they are pinned dependencies), then PATH.
    for p in extra:
        if p.is_file() and os.access(p, os.X_OK) and p.resolve() not in seen:
            seen.add(p.resolve())
            yield p
    for exe in spec.names:
        found = cmd.which(exe)
        if found and Path(found).resolve() not in seen:
            seen.add(Path(found).resolve())
            yield Path(found)


def _probe_version(path: Path, spec: ToolSpec) -> Version | None:
    try:
        out = cmd.capture([str(path), *spec.version_args], timeout=20, check=False)
    except (CommandError, ToolchainError, OSError):
        return None
    match = re.search(spec.version_pattern, out) if spec.version_pattern else \
        _VERSION_RE.search(out)
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


def _vulkan_headers() -> Iterator[Program]:
    """Vulkan headers: $VULKAN_SDK, buildtool's provisioned copies, the system's."""
    from buildtool.paths import cache_dir

    roots: list[Path] = []
    if os.environ.get("VULKAN_SDK"):
        roots.append(Path(os.environ["VULKAN_SDK"]) / "include")
    roots += sorted((cache_dir() / "toolchains").glob("vulkan-headers-*/usr/include"),
                    reverse=True)
    roots.append(Path("/usr/include"))
    for root in roots:
        header = root / "vulkan" / "vulkan_core.h"
        try:
            text = header.read_text(errors="replace")
        except OSError:
            continue
        patch = re.search(r"#define VK_HEADER_VERSION (\d+)", text)
        complete = re.search(r"#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION\("
                             r"\s*\d+,\s*(\d+),\s*(\d+)", text)
        version = Version(f"{complete.group(1)}.{complete.group(2)}.{patch.group(1)}") \
            if patch and complete else None
        yield Program("vulkan-headers", root, version)


def rocm_roots() -> list[Path]:
    """ROCm installations: $ROCM_PATH, $HIP_PATH, /opt/rocm, then /opt/rocm-X.Y.Z newest first."""
    roots = [Path(r) for r in (os.environ.get("ROCM_PATH"), os.environ.get("HIP_PATH")) if r]
    roots.append(Path("/opt/rocm"))
    roots += sorted(Path("/opt").glob("rocm-*"), key=_version_key, reverse=True)
    return list(dict.fromkeys(roots))


def oneapi_roots() -> list[Path]:
    """oneAPI installations: $ONEAPI_ROOT, /opt/intel/oneapi, ~/intel/oneapi."""
    roots = [Path(os.environ["ONEAPI_ROOT"])] if os.environ.get("ONEAPI_ROOT") else []
    roots += [Path("/opt/intel/oneapi"), Path.home() / "intel" / "oneapi"]
    return list(dict.fromkeys(roots))


_CMAKE_VERSION_RE = re.compile(r'set\(PACKAGE_VERSION "([0-9.]+)"\)')


def _rocm_library(name: str) -> Iterator[Program]:
    """hipBLAS/rocBLAS: the shared library in each ROCm root, its version from the CMake
    package's version file (or the library's file name)."""
    for root in rocm_roots():
        libs = sorted((root / "lib").glob(f"lib{name}.so*"), key=lambda p: len(p.name))
        if not libs:
            continue
        version: Version | None = None
        config = root / "lib" / "cmake" / name / f"{name}-config-version.cmake"
        text = config.read_text(errors="replace") if config.is_file() else ""
        match = _CMAKE_VERSION_RE.search(text) or re.search(r"\.so\.(\d+\.\d+)", libs[-1].name)
        if match:
            with contextlib.suppress(InvalidVersion):
                version = Version(match.group(1))
        yield Program(name, libs[0], version)


def _oneapi() -> Iterator[Program]:
    """oneAPI's setvars.sh; the version is the compiler's (compiler/latest → 2025.1 ...)."""
    for root in oneapi_roots():
        setvars = root / "setvars.sh"
        if not setvars.is_file():
            continue
        versions = [p.resolve().name for p in (root / "compiler").glob("*")
                    if p.is_dir() and _VERSION_RE.fullmatch(p.resolve().name)]
        version = max((Version(v) for v in versions), default=None)
        yield Program("oneapi", setvars, version)


@functools.cache
def find_all(name: str) -> tuple[Program, ...]:
    if name == "vulkan-headers":
        return tuple(_vulkan_headers())
    if name in ("hipblas", "rocblas"):
        return tuple(_rocm_library(name))
    if name == "oneapi":
        return tuple(_oneapi())
    spec = TOOLS.get(name) or ToolSpec((name,))
    return tuple(Program(name, p, _probe_version(p, spec)) for p in _candidates(name, spec))


def best(name: str, specifier: str = "") -> Program | None:
    spec_set = _specifier(specifier)
    for program in find_all(name):
        if not spec_set or (program.version is not None and
                            spec_set.contains(program.version, prereleases=True)):
            return program
    return None


def _specifier(text: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise ToolchainError(f"invalid version range '{text}': {exc}") from exc


def install_hint(name: str) -> str:
    spec = TOOLS.get(name)
    return spec.install if spec and spec.install else f"install '{name}'"


def inventory(names: Iterable[str] | None = None) -> dict[str, list[Program]]:
    return {n: list(find_all(n)) for n in (names or TOOLS)}


def host_platform() -> str:
    import platform as _platform

    from buildtool.detect.cpu import normalize_arch

    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform,
                                                                          sys.platform)
    return platform_name(system, normalize_arch(_platform.machine()))


def platform_name(system: str, arch: str) -> str:
    """Platform strings follow each OS's convention: linux-aarch64 but macos-arm64."""
    if arch == "aarch64" and system in ("macos", "windows"):
        arch = "arm64"
    return f"{system}-{arch}"
