"""What names and values may look like, and the closed sets of the model.

Each name becomes part of a file name, a CMake cache entry, an environment variable or an
image reference, so what passes these grammars cannot escape a directory, inject a second
CMake definition or cut a command line short. Configuration (:mod:`buildtool.config.model`), records
(:mod:`buildtool.records`) and command-line values are all checked against them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from buildtool.cpudata import CPU
from buildtool.schema import Match, Range

_PART = r"(?!\.{1,2}(?:/|$))[A-Za-z0-9_.+-]+"
TargetName = Annotated[str, Match(r"[a-z0-9][a-z0-9_-]{0,63}",
                                  "a name of lower-case letters, digits, '-' and '_'")]
FileName = Annotated[str, Match(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}",
                                "a file name (letters, digits, '.', '_', '+', '-'; no '/')")]
RelativePath = Annotated[str, Match(rf"{_PART}(?:/{_PART})*",
                                    "a relative path without '..' (letters, digits, '.', '_', "
                                    "'+', '-', '/')")]
CMakeName = Annotated[str, Match(r"[A-Za-z_][A-Za-z0-9_.+-]{0,127}",
                                 "a CMake variable name (letters, digits, '_', '.', '+', '-')")]
OneLine = Annotated[str, Match(r"[^\x00-\x08\x0a-\x1f\x7f]*",
                               "a value on one line (no control characters)")]
EnvName = Annotated[str, Match(r"[A-Za-z_][A-Za-z0-9_]{0,127}",
                               "an environment variable name")]
Version = Annotated[str, Match(r"[0-9]+(?:\.[0-9]+){0,3}", "a version such as 12.4")]
# a llama-quantize type name (Q4_0, Q4_K_M, Q6_K, IQ4_XS, ...)
QuantType = Annotated[str, Match(r"(?:I?Q[1-8]_[0-9A-Z_]{1,6}|TQ[12]_0|MXFP4(?:_MOE)?)",
                                 "a llama-quantize type such as Q4_K_M")]
BUILD_TAG = r"b[0-9]{1,7}"  # a llama.cpp build tag: b<build number>
BuildTag = Annotated[str, Match(BUILD_TAG, "a llama.cpp build tag such as b11312")]
GpuArch = Annotated[str, Match(r"[A-Za-z0-9_.+-]{1,32}",
                               "a GPU architecture such as 89-real or gfx1100")]
FeatureName = Annotated[str, Match(r"[a-z0-9_]{1,32}", "a CPU feature name such as avx2")]
Glob = Annotated[str, Match(r"[A-Za-z0-9_.+*?\[\]-]{1,255}", "a file name pattern")]
_GLOB_PART = r"(?!\.{1,2}(?:/|$))[A-Za-z0-9_.+*?\[\]-]{1,255}"
PathGlob = Annotated[str, Match(rf"{_GLOB_PART}(?:/{_GLOB_PART}){{0,15}}",
                                "a relative path pattern without '..' (nvidia/*/lib)")]
# image references may use {toolkit} placeholders in recipes
ImageRef = Annotated[str, Match(r"[A-Za-z0-9{][A-Za-z0-9._/:@{}-]{0,254}",
                                "an image reference such as ubuntu:24.04")]
WheelName = Annotated[str, Match(r"[A-Za-z0-9{][A-Za-z0-9._{}-]{0,99}",
                                 "a distribution name (letters, digits, '.', '_', '-')")]
PackageName = Annotated[str, Match(r"[a-z0-9][a-z0-9+.-]{0,127}",
                                   "a Debian/Ubuntu package name such as libvulkan-dev")]
Count = Annotated[int, Range(minimum=1, maximum=1_000_000)]
Revision = Annotated[int, Range(minimum=0, maximum=1_000_000)]

Platform = Literal["linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64",
                   "windows-x86_64", "windows-arm64"]
ArtifactKind = Literal["tarball", "wheel", "image"]

ALL_PLATFORMS: tuple[Platform, ...] = ("linux-x86_64", "linux-aarch64", "macos-arm64",
                                       "macos-x86_64", "windows-x86_64", "windows-arm64")
# a CPU policy: this host's features, every ggml variant, or a level of the CPU data file
CPU_POLICIES: tuple[str, ...] = ("host", "all-variants", *CPU.levels)
CpuPolicy = Annotated[str, Match.one_of(CPU_POLICIES, "a CPU policy")]
# a feature the CPU data file knows (configuration; records may name others)
KnownFeature = Annotated[str, Match.one_of(CPU.features, "a CPU feature")]
KnownVariant = Annotated[str, Match.one_of(CPU.variants, "a ggml CPU variant")]
CpuLevel = Annotated[str, Match.one_of(CPU.levels, "a CPU level")]
