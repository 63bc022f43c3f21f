"""The data model: raw inputs (matrix, recipes) and the frozen, resolved target.

These dataclasses are the schema of ``build_matrix.yaml`` and ``recipes/*.yaml``
(see :mod:`buildtool.schema`). Field docs become JSON-schema descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from buildtool.backends import REGISTRY
from buildtool.cpudata import CPU
from buildtool.grammar import (
    ArtifactKind,
    BuildTag,
    CMakeName,
    Count,
    CpuLevel,
    CpuPolicy,
    EnvName,
    FileName,
    Glob,
    GpuArch,
    ImageRef,
    KnownFeature,
    KnownVariant,
    OneLine,
    PackageName,
    PathGlob,
    Platform,
    QuantType,
    RelativePath,
    Revision,
    TargetName,
    Version,
    WheelName,
)
from buildtool.records import AbiVersions
from buildtool.schema import Match

# a CPU model an emulator offers (data/cpu.yaml cpu-models)
CpuModelName = Annotated[str, Match.one_of(CPU.model_names(), "a CPU model of data/cpu.yaml")]
# a backend family: one module in buildtool/backends, registered there
Family = Annotated[str, Match.one_of(REGISTRY, "a backend family")]
DefineValue = OneLine | bool | int


def doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, kw_only=True)
class SmokeSpec:
    """llama-bench parameters for the smoke test."""

    n_prompt: Count = field(default=32, metadata=doc("prompt tokens (llama-bench -p)"))
    n_gen: Count = field(default=16, metadata=doc("generated tokens (llama-bench -n)"))
    repetitions: Count = field(default=2, metadata=doc("repetitions (llama-bench -r)"))


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """Values every target inherits unless it sets its own."""

    cpu: CpuPolicy | None = field(default=None, metadata=doc("CPU instruction policy"))
    artifacts: tuple[ArtifactKind, ...] = ("tarball",)
    build_targets: tuple[FileName, ...] = field(
        default=("llama-server", "llama-cli", "llama-bench", "llama-quantize", "llama-results"),
        metadata=doc("CMake targets to build; the artifact ships exactly these and their "
                     "shared libraries"))
    cmake_defines: dict[CMakeName, DefineValue] = field(default_factory=dict)
    smoke: SmokeSpec = field(default_factory=SmokeSpec)
    revision: Revision = field(default=0, metadata=doc(
        "packaging revision: bump it to republish the same llama.cpp build (a wheel's "
        "version is <llama.cpp build number>.<revision>)"))
    llama_cpp: BuildTag | None = field(default=None, metadata=doc(
        "the llama.cpp version every target builds (a build tag such as b11312): the default "
        "lock's, or one kept beside it as vendor/llama.cpp-<version>.lock.json; default: "
        "the default lock's"))


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """One row of the build matrix: WHAT to build."""

    recipe: TargetName = field(metadata=doc("name of a file recipes/<recipe>.yaml"))
    description: str = ""
    platforms: tuple[Platform, ...] | None = field(
        default=None, metadata=doc("platforms this target is built for (default: the "
                                   "recipe's)"))
    artifacts: tuple[ArtifactKind, ...] | None = None
    cpu: CpuPolicy | None = None
    toolkit: Version | None = field(default=None, metadata=doc(
        "toolkit version the target is built with (CUDA '12.4', ROCm '6.4', ...)"))
    gpu_archs: tuple[GpuArch, ...] | None = field(default=None, metadata=doc(
        "GPU architectures (CUDA compute capabilities such as '89', AMD gfx names)"))
    build_targets: tuple[FileName, ...] | None = None
    cmake_defines: dict[CMakeName, DefineValue] = field(default_factory=dict, metadata=doc(
        "extra -D definitions; they override the recipe's"))
    runner: OneLine | None = field(default=None, metadata=doc("CI runner label for this target"))
    container: ImageRef | None = field(default=None, metadata=doc(
        "CI build container image (default: the recipe's docker build-image)"))
    revision: Revision | None = field(default=None, metadata=doc(
        "packaging revision of this target (default: defaults.revision)"))
    wheel_requires: tuple[OneLine, ...] | None = field(default=None, metadata=doc(
        "the wheel's dependencies, instead of the recipe's wheel-requires"))
    docker: DockerImages | None = field(default=None, metadata=doc(
        "base images of this target's container image, instead of the recipe's"))
    llama_cpp: BuildTag | None = field(default=None, metadata=doc(
        "the llama.cpp version this target builds, instead of defaults.llama-cpp (a kept "
        "lock's version, vendor/llama.cpp-<version>.lock.json)"))


@dataclass(frozen=True, kw_only=True)
class DockerImages:
    """Base images of a target's container image (build arguments BUILD_IMAGE and
    RUNTIME_IMAGE); either may be left to the recipe."""

    build_image: ImageRef | None = field(default=None, metadata=doc(
        "the build stage's base: it holds the toolchain"))
    runtime_image: ImageRef | None = field(default=None, metadata=doc(
        "the runtime stage's base: what the image ships on"))


@dataclass(frozen=True, kw_only=True)
class PlatformSpec:
    """What every artifact of one platform must meet, and where its claims are proven."""

    abi_floor: AbiVersions | None = field(default=None, metadata=doc(
        "the highest symbol versions its binaries may need (glibc, libstdcxx, cxxabi, "
        "libgcc): an artifact above fails the build (exit code 10); BUILDTOOL_ABI_FLOOR "
        "and --abi-floor override it"))
    cpu_models: tuple[CpuModelName, ...] = field(default=(), metadata=doc(
        "emulated CPU models (data/cpu.yaml cpu-models) the smoke runs each artifact on: "
        "those its CPU claim covers"))
    runner: OneLine | None = field(default=None, metadata=doc(
        "the CI runner that builds this platform natively (`buildtool matrix`: a job per "
        "target and platform; a target's own runner is for its first platform)"))


@dataclass(frozen=True, kw_only=True)
class CompileCacheSpec:
    """The compile cache every build shares (ccache's remote storage)."""

    url: OneLine = field(metadata=doc(
        "redis://HOST[:PORT], http://HOST[:PORT]/PATH (a server taking GET/PUT) or "
        "file:///DIRECTORY; without credentials (those go in $BUILDTOOL_COMPILE_CACHE)"))
    read_only: bool = field(default=False, metadata=doc(
        "read the cache, never write it (untrusted builds)"))


@dataclass(frozen=True, kw_only=True)
class Matrix:
    """build_matrix.yaml: the declarative list of targets."""

    version: Literal[1]
    lock: RelativePath = field(default="vendor/llama.cpp.lock.json",
                               metadata=doc("path of the llama.cpp pin, relative to this file "
                                            "and inside its directory"))
    defaults: Defaults = field(default_factory=Defaults)
    platforms: dict[Platform, PlatformSpec] = field(default_factory=dict, metadata=doc(
        "per platform: the ABI floor its artifacts must meet and the CPU models they are "
        "proven on"))
    compile_cache: CompileCacheSpec | None = field(default=None, metadata=doc(
        "the shared compile cache (ccache remote storage) of every build; "
        "$BUILDTOOL_COMPILE_CACHE and --compile-cache override it"))
    targets: dict[TargetName, TargetSpec]


@dataclass(frozen=True, kw_only=True)
class ToolRequirement:
    """A program the recipe needs, with a PEP 440 version range and how to get it."""

    tool: TargetName
    version: OneLine = ""
    install: str = ""

    def __post_init__(self) -> None:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        sample = re.sub(r"\{toolkit[a-z_]*\}", "1", self.version)
        try:
            SpecifierSet(sample)
        except InvalidSpecifier:
            raise ValueError(f"version: {self.version!r} is not a PEP 440 version range "
                             "such as '>=3.18' or '==12.*'") from None


@dataclass(frozen=True, kw_only=True)
class DockerSpec:
    """The recipe's container image: its Dockerfile in recipes/docker and base images."""

    dockerfile: FileName = field(metadata=doc(
        "file name in recipes/docker (one Dockerfile per backend family)"))
    build_image: ImageRef = field(metadata=doc(
        "the build stage's base image (holds the toolchain); may use {toolkit}"))
    runtime_image: ImageRef = field(metadata=doc(
        "the runtime stage's base image; may use {toolkit}"))


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """recipes/<name>.yaml: HOW a backend family is built and what its smoke test expects."""

    family: Family
    description: str
    backend: str = field(metadata=doc(
        "backend name llama-bench reports in its 'backends' field (CPU, CUDA, Vulkan, ...)"))
    gpu: bool = field(default=False, metadata=doc(
        "the smoke test must offload layers to a GPU device of this backend"))
    platforms: tuple[Platform, ...]
    cpu: CpuPolicy | None = None
    cpu_floor: tuple[CpuLevel, ...] = field(default=(), metadata=doc(
        "per architecture, the lowest CPU level the family's runtime runs on (a vendor "
        "runtime the artifact bundles): the artifact claims at least that level"))
    toolkit: Version | None = None
    gpu_archs: tuple[GpuArch, ...] = ()
    cmake_defines: dict[CMakeName, DefineValue] = field(default_factory=dict)
    requires: tuple[ToolRequirement, ...] = ()
    audit_allow: tuple[AuditAllow, ...] = field(default=(), metadata=doc(
        "instructions the ISA audit accepts in this family's files, beside "
        "recipes/common.yaml's"))
    ci_packages: tuple[PackageName, ...] = field(default=(), metadata=doc(
        "Ubuntu packages a CI runner installs before it builds this family (not in a "
        "toolchain container)"))
    smoke_env: dict[EnvName, str] = field(default_factory=dict, metadata=doc(
        "environment for llama-bench during the smoke test"))
    smoke_quantized: SmokeQuantized | None = field(default=None, metadata=doc(
        "the quantized types the smoke's numerics check runs, instead of Q4_0 and Q4_K_M "
        "(a backend defect at the pin), with why"))
    docker: DockerSpec | None = None
    wheel_name: WheelName = field(default="llama-cpp-bin-{family}", metadata=doc(
        "the wheel's distribution name, one per target (cupy-cuda12x style); may use "
        "{family}, {toolkit}, {toolkit_major}"))
    wheel_requires: tuple[OneLine, ...] = field(default=(), metadata=doc(
        "the wheel's dependencies (e.g. NVIDIA's runtime wheels); may use {toolkit_major}"))
    wheel_before_all: str = field(default="", metadata=doc(
        "cibuildwheel before-all: installs the toolchain in the manylinux container; may "
        "use {toolkit}, {toolkit_major}, {toolkit_dashed} (12-4)"))
    wheel_environment: dict[EnvName, OneLine] = field(default_factory=dict, metadata=doc(
        "cibuildwheel environment (where that toolchain is); same placeholders"))
    wheel_exclude: tuple[Glob, ...] = field(default=(), metadata=doc(
        "libraries (sonames, fnmatch patterns) a wheel must not bundle: the user's driver "
        "or a dependency in wheel-requires provides them"))
    wheel_library_dirs: tuple[PathGlob, ...] = field(default=(), metadata=doc(
        "where the libraries of wheel-requires lie, as globs below site-packages "
        "(nvidia/*/lib): the wheel's launcher puts them on the loader's path"))


@dataclass(frozen=True, kw_only=True)
class AuditAllow:
    """Instructions the ISA audit accepts in one place, because the code checks CPUID first."""

    file: Glob = field(metadata=doc("glob on the shipped file name"))
    symbol: OneLine = field(metadata=doc("glob on the (mangled) function name"))
    features: tuple[KnownFeature, ...]
    reason: str = field(metadata=doc("why it is safe: where the runtime check is"))


@dataclass(frozen=True, kw_only=True)
class SmokeQuantized:
    """The quantized types a backend's smoke checks, when the defaults cannot run there."""

    types: tuple[QuantType, ...] = field(metadata=doc(
        "llama-quantize types; the first is also benchmarked; keep a K-quant among them"))
    reason: str = field(metadata=doc("what fails with the defaults, with the upstream report"))


@dataclass(frozen=True, kw_only=True)
class AvoidCpuFeatures:
    """CPU features the pinned llama.cpp must not be built for: a known upstream defect."""

    features: tuple[KnownFeature, ...] = field(metadata=doc(
        "feature names of buildtool's CPU data (src/buildtool/data/cpu.yaml), e.g. amx_int8"))
    reason: str = field(metadata=doc("what goes wrong, with the upstream report"))
    variants: tuple[KnownVariant, ...] = field(default=(), metadata=doc(
        "GGML_CPU_ALL_VARIANTS libraries (libggml-cpu-<name>.so) left out of artifacts"))
    since: BuildTag | None = field(default=None, metadata=doc(
        "the first llama.cpp build with the defect (absent: every build before fixed-in)"))
    fixed_in: BuildTag | None = field(default=None, metadata=doc(
        "the first build with the fix (absent: still open upstream); from it on the "
        "workaround no longer applies and `vendor lock` says to drop it"))

    def applies(self, build_number: int) -> bool:
        """Whether a tree of this build number has the defect."""
        return (self.since is None or build_number >= int(self.since[1:])) and \
            (self.fixed_in is None or build_number < int(self.fixed_in[1:]))

    def at(self, build_number: int) -> str:
        """What a lock update to ``build_number`` means for this workaround."""
        what = f"workaround avoid-cpu-features {', '.join(self.features)}"
        if self.applies(build_number):
            if self.fixed_in is None:
                return f"{what}: still applies (open upstream: check its report)"
            return f"{what}: still applies (fixed in {self.fixed_in})"
        if self.fixed_in is not None and build_number >= int(self.fixed_in[1:]):
            return f"{what}: fixed in {self.fixed_in}, inactive from b{build_number} on: " \
                   "drop it"
        return f"{what}: inactive at b{build_number} (the defect arrived in {self.since})"


@dataclass(frozen=True, kw_only=True)
class CommonRecipe:
    """recipes/common.yaml: CMake definitions shared by every recipe."""

    cmake_defines: dict[CMakeName, DefineValue]
    requires: tuple[ToolRequirement, ...] = ()
    audit_allow: tuple[AuditAllow, ...] = ()
    avoid_cpu_features: tuple[AvoidCpuFeatures, ...] = ()
