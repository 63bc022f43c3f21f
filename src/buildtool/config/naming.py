"""Names every artifact kind derives from a resolved target, in one place.

Wheels follow the cupy-cuda12x / jax-cuda12-plugin convention: one distribution per target
whose name says what it is (``llama-cpp-bin-cpu``, ``llama-cpp-bin-cuda12x``,
``llama-cpp-bin-vulkan``), importable as ``llama_cpp_bin_cuda12x``. The version is the pinned
llama.cpp build number and the packaging revision (``11312.0``); a build tuned to one CPU
(any CPU policy but all-variants) carries it as a local label (``11312.0+host.x86.64.v4``),
so such a wheel never passes for a portable one.
"""

from __future__ import annotations

import re

from buildtool.config.resolve import ResolvedTarget

LIB_PATTERNS = ("lib*.so", "lib*.so.*", "*.dylib", "*.dll")
# buildtool's platform names → cibuildwheel's architecture names (CIBW_ARCHS), per OS
CI_ARCHS = {"linux-x86_64": "x86_64", "linux-aarch64": "aarch64", "macos-arm64": "arm64",
            "macos-x86_64": "x86_64", "windows-x86_64": "AMD64", "windows-arm64": "ARM64"}
_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return _NORMALIZE.sub("-", name).lower()


def distribution(rt: ResolvedTarget) -> str:
    return normalize(rt.wheel_name)


def module(rt: ResolvedTarget) -> str:
    """The importable package inside the wheel."""
    return distribution(rt).replace("-", "_")


def local_label(rt: ResolvedTarget) -> str:
    """'' for portable builds, else the CPU variant as a PEP 440 local label."""
    if rt.cpu_policy == "all-variants":
        return ""
    return re.sub(r"[^a-z0-9]+", ".", rt.variant.lower()).strip(".")


def version(rt: ResolvedTarget) -> str:
    base = f"{rt.build_number}.{rt.revision}"
    label = local_label(rt)
    return f"{base}+{label}" if label else base


def wheel_stem(rt: ResolvedTarget) -> str:
    """``{distribution}-{version}`` as a wheel file name spells it (PEP 427)."""
    return f"{module(rt)}-{version(rt)}"


def left_out_files(rt: ResolvedTarget) -> tuple[str, ...]:
    """Library files an artifact does not ship (all-variants libraries of a known defect)."""
    return tuple(f"libggml-cpu-{v}{suffix}" for v in rt.dropped_variants
                 for suffix in (".so", ".dylib", ".dll"))
