"""Find tools as ranked candidates with versions (after scikit-build-core's program_search).

Each tool has a list of candidate paths in order of preference; every candidate that exists
is probed for its version; :func:`best` returns the first one whose version satisfies a
PEP 440 specifier set. Results are cached per process.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator
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
    """How to find one tool: executable names, where else to look, how to read its version.
    A tool that is no program (headers, a library, an SDK's setup script) has ``find``,
    which yields what it found with versions."""

    names: tuple[str, ...]
    version_args: tuple[str, ...] = ("--version",)
    version_pattern: str | None = None
    install: str = ""
    places: Callable[[], Iterable[Path]] | None = None  # candidates preferred over PATH
    find: Callable[[], Iterable[Program]] | None = None


def _python_package_bin(module: str, attr: str, exe: str) -> list[Path]:
    try:
        mod = __import__(module)
    except ImportError:
        return []
    value = getattr(mod, attr, None)
    return [Path(value) / exe] if value else []


def version_key(path: Path) -> tuple[int, ...]:
    """The numbers in a directory's name, to sort versioned installations (cuda-12.4)."""
    return tuple(int(n) for n in re.findall(r"\d+", path.name)) or (0,)


def _llvm_bin(exe: str) -> Callable[[], list[Path]]:
    """Debian's versioned LLVM directories, newest first (/usr/lib/llvm-16/bin/clang)."""
    return lambda: [d / "bin" / exe for d in sorted(Path("/usr/lib").glob("llvm-*"),
                                                     key=version_key, reverse=True)]


_LLVM_VERSIONS = range(21, 13, -1)
INSTALL_LLVM = "apt-get install clang-16 lld-16 llvm-16 (Debian 12), or any LLVM >= 16"

# The tools every build needs, and those of cross builds and the AArch64 audit (clang, lld,
# llvm-objdump: one LLVM targets every architecture). Each backend family adds its own (nvcc,
# glslc, the Vulkan headers, ROCm's libraries, ...) through `register`, from its module's
# `finders`.
TOOLS: dict[str, ToolSpec] = {
    "clang": ToolSpec((*(f"clang-{v}" for v in _LLVM_VERSIONS), "clang"),
                      install=INSTALL_LLVM, places=_llvm_bin("clang")),
    "clang++": ToolSpec((*(f"clang++-{v}" for v in _LLVM_VERSIONS), "clang++"),
                        install=INSTALL_LLVM, places=_llvm_bin("clang++")),
    "ld.lld": ToolSpec((*(f"ld.lld-{v}" for v in _LLVM_VERSIONS), "ld.lld"),
                       version_pattern=r"LLD (\d+\.\d+(?:\.\d+)?)", install=INSTALL_LLVM,
                       places=_llvm_bin("ld.lld")),
    "llvm-objdump": ToolSpec((*(f"llvm-objdump-{v}" for v in _LLVM_VERSIONS), "llvm-objdump"),
                             install=INSTALL_LLVM, places=_llvm_bin("llvm-objdump")),
    # the PyPI packages' binaries are preferred (they are pinned dependencies), then PATH
    "cmake": ToolSpec(("cmake",), install="pip install cmake (a dependency of buildtool)",
                      places=lambda: _python_package_bin("cmake", "CMAKE_BIN_DIR", "cmake")),
    "ninja": ToolSpec(("ninja",), install="pip install ninja (a dependency of buildtool)",
                      places=lambda: _python_package_bin("ninja", "BIN_DIR", "ninja")),
    "cc": ToolSpec(("cc", "gcc", "clang"), install="apt-get install build-essential"),
    "cxx": ToolSpec(("c++", "g++", "clang++"), install="apt-get install build-essential"),
    "ccache": ToolSpec(("ccache",), install="apt-get install ccache"),
}


def register(name: str, spec: ToolSpec) -> None:
    """Add a tool a backend family knows how to find."""
    if TOOLS.get(name, spec) != spec:
        raise ValueError(f"tool '{name}' is registered twice")
    TOOLS[name] = spec
    find_all.cache_clear()


def _candidates(name: str, spec: ToolSpec) -> Iterator[Path]:
    seen: set[Path] = set()
    for p in spec.places() if spec.places else ():
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


def version_of(name: str, path: Path) -> Version | None:
    """The version of the program at ``path``, read as tool ``name``'s is."""
    return _probe_version(path, TOOLS.get(name) or ToolSpec((name,)))


@functools.cache
def find_all(name: str) -> tuple[Program, ...]:
    spec = TOOLS.get(name) or ToolSpec((name,))
    if spec.find is not None:
        return tuple(spec.find())
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
