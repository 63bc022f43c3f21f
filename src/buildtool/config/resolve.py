"""Raw inputs → one frozen :class:`ResolvedTarget`, with the origin of every value.

Precedence, lowest first (documented in the README and build_matrix.yaml):

1. ``recipes/common.yaml``      2. ``recipes/<recipe>.yaml``
3. computed by buildtool (CPU policy, backend: toolkit paths, GPU archs; platform RPATH;
   the lock's commit and build number)
4. ``build_matrix.yaml`` defaults     5. ``build_matrix.yaml`` target
6. environment (``BUILDTOOL_CPU``)    7. command line (``--cpu``, ``--toolkit``,
   ``--gpu-archs``, ``-D NAME=VALUE``)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from buildtool import abi
from buildtool.backends import REGISTRY, BackendContext
from buildtool.backends.base import Bundle
from buildtool.backends.cpu import cpu_settings
from buildtool.config.model import (
    AuditAllow,
    AvoidCpuFeatures,
    DefineValue,
    Recipe,
    SmokeSpec,
    ToolRequirement,
)
from buildtool.config.project import Project
from buildtool.cpudata import CPU
from buildtool.detect.cpu import CpuInfo, normalize_arch
from buildtool.errors import BuildtoolError, ConfigError, UsageError
from buildtool.grammar import CPU_POLICIES, ArtifactKind, Platform
from buildtool.records import AbiVersions
from buildtool.schema import check_value, suggest
from buildtool.source.vendor import Lock, LockSet
from buildtool.toolchains import cross


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """Values from the command line (highest precedence)."""

    cpu: str | None = None
    platform: str | None = None
    abi_floor: AbiVersions | None = None
    toolkit: str | None = None
    gpu_archs: tuple[str, ...] | None = None
    defines: tuple[tuple[str, str], ...] = ()
    llama_cpp: str | None = None  # a version of the lock set (--llama-cpp b10454)


@dataclass(frozen=True, kw_only=True)
class ResolvedTarget:
    name: str
    description: str
    recipe_name: str
    recipe: Recipe
    platform: Platform
    platforms: tuple[Platform, ...]
    host_platform: str
    platform_supported: bool
    cross: bool = False  # compiled on this host for another architecture (toolchains.cross)
    cpu_policy: str
    cpu_requested: str = ""  # the policy configured, before it was adapted to this host
    cpu_level: str | None
    cpu_features: tuple[str, ...]
    toolkit: str | None
    gpu_archs: tuple[str, ...]
    build_targets: tuple[str, ...]
    artifacts: tuple[ArtifactKind, ...]
    defines: tuple[tuple[str, str], ...]
    host_only: frozenset[str] = frozenset()  # defines that only hold on this machine
    configure_env: tuple[tuple[str, str], ...]
    requires: tuple[ToolRequirement, ...]
    smoke: SmokeSpec
    origins: Mapping[str, str] = field(default_factory=dict)
    lock: Lock  # the llama.cpp version it builds: the pin every later stage reads
    avoided: tuple[AvoidCpuFeatures, ...] = ()  # known defects steered around (common.yaml)
    audit_allow: tuple[AuditAllow, ...] = ()  # common.yaml's and the recipe's
    runtime: tuple[Bundle, ...] = ()  # what a tarball bundles from the toolchain (this host)
    revision: int = 0
    runner: str = "ubuntu-24.04"  # the CI runner label
    container: str | None = None  # the CI build container, when not the recipe's image
    wheel_name: str = ""
    wheel_requires: tuple[str, ...] = ()
    wheel_exclude: tuple[str, ...] = ()
    wheel_library_dirs: tuple[str, ...] = ()
    wheel_before_all: str = ""
    wheel_environment: tuple[tuple[str, str], ...] = ()
    dockerfile: str | None = None  # recipes/docker/<file>; None: no container image
    build_image: str | None = None
    runtime_image: str | None = None
    abi_floor: AbiVersions | None = None  # what its binaries may need (Linux)
    cpu_models: tuple[str, ...] = ()  # emulated CPU models listed for its platform

    @property
    def dropped_variants(self) -> tuple[str, ...]:
        """all-variants libraries left out of the artifact because of ``avoided``."""
        if self.cpu_policy != "all-variants":
            return ()
        return tuple(v for a in self.avoided for v in a.variants)

    @property
    def commit(self) -> str:
        return self.lock.commit

    @property
    def build_number(self) -> int:
        return self.lock.build_number

    @property
    def family(self) -> str:
        return self.recipe.family

    @property
    def backend(self) -> str:
        return self.recipe.backend

    @property
    def variant(self) -> str:
        """The CPU part of the artifact name ('' for portable all-variants builds)."""
        if self.cpu_policy == "all-variants":
            return ""
        if self.cpu_policy == "host":
            return f"host-{self.cpu_level}" if self.cpu_level else "host"
        return self.cpu_policy

    def define(self, name: str) -> str | None:
        return dict(self.defines).get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.name, "description": self.description, "recipe": self.recipe_name,
            "family": self.family, "backend": self.backend, "gpu": self.recipe.gpu,
            "llama_cpp": {"version": self.lock.version, "commit": self.lock.commit,
                          "lock": self.lock.path.name},
            "platform": self.platform, "platforms": list(self.platforms), "cross": self.cross,
            "cpu_policy": self.cpu_policy,
            "cpu_level": self.cpu_level, "cpu_features": list(self.cpu_features),
            "toolkit": self.toolkit, "gpu_archs": list(self.gpu_archs),
            "build_targets": list(self.build_targets), "artifacts": list(self.artifacts),
            "cmake_defines": dict(self.defines), "configure_env": dict(self.configure_env),
            "origins": dict(self.origins),
            "avoided_cpu_features": [{"features": list(a.features), "variants": list(a.variants),
                                      "reason": a.reason} for a in self.avoided],
            "dropped_variants": list(self.dropped_variants),
            "revision": self.revision,
            "wheel": {"name": self.wheel_name, "requires": list(self.wheel_requires),
                      "exclude": list(self.wheel_exclude),
                      "library_dirs": list(self.wheel_library_dirs)},
            "runtime": [{"name": b.name, "version": b.version,
                         "files": [str(f) for f in b.files]} for b in self.runtime],
            "image": {"dockerfile": self.dockerfile, "build_image": self.build_image,
                      "runtime_image": self.runtime_image},
            "abi_floor": {k: v for k, v in vars(self.abi_floor).items() if v}
            if self.abi_floor else None,
            "cpu_models": list(self.cpu_models),
        }


def _fill(text: str, toolkit: str | None, family: str = "") -> str:
    """Recipe text may name the target's toolkit: {toolkit} (12.4), {toolkit_major} (12),
    and its {family}."""
    return text.replace("{toolkit}", toolkit or "").replace(
        "{toolkit_major}", (toolkit or "0").split(".")[0]).replace("{family}", family).replace(
        "{toolkit_dashed}", (toolkit or "").replace(".", "-"))


def format_value(value: DefineValue) -> str:
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return str(value)


@dataclass(frozen=True)
class Layer:
    """One source of values, from lowest precedence to highest: what it is (``origin``, shown
    by `buildtool plan`) and the values it sets (None: not set here). ``defines`` are merged
    through the layers in order, every other value is taken from the last layer that sets it
    (the pattern of scikit-build-core's SourceChain and cibuildwheel's option readers)."""

    origin: str
    values: Mapping[str, Any] = field(default_factory=dict)
    defines: tuple[tuple[str, DefineValue], ...] = ()
    host_only: frozenset[str] = frozenset()


def pick(layers: list[Layer], key: str, origins: dict[str, str]) -> Any:
    """The value of ``key`` from the highest layer that sets it, recording its origin."""
    value: Any = None
    for layer in layers:
        if layer.values.get(key) is not None:
            value = layer.values[key]
            origins[key] = layer.origin
    return value


def config_layers(project: Project, name: str, overrides: Overrides,
                  env: Mapping[str, str]) -> tuple[list[Layer], list[Layer]]:
    """The configured layers below and above the values buildtool computes: buildtool's
    defaults, recipes/common.yaml, the recipe — then the matrix defaults, the target, the
    environment, the command line. README "The matrix and the recipes" documents the order."""
    spec = project.target(name)
    recipe = project.recipes[spec.recipe]
    defaults = project.matrix.defaults
    mx = project.matrix_path.name
    docker, images = recipe.docker, spec.docker
    below = [
        Layer("buildtool default", {"cpu": "host", "runner": "ubuntu-24.04"}),
        Layer("recipes/common.yaml", defines=tuple(project.common.cmake_defines.items())),
        Layer(f"recipes/{spec.recipe}.yaml", {
            "platforms": recipe.platforms, "cpu": recipe.cpu, "toolkit": recipe.toolkit,
            "gpu_archs": recipe.gpu_archs or None,
            "build_image": docker.build_image if docker else None,
            "runtime_image": docker.runtime_image if docker else None,
            "wheel_requires": recipe.wheel_requires},
            defines=tuple(recipe.cmake_defines.items())),
    ]
    above = [
        Layer(f"{mx}:defaults", {
            "cpu": defaults.cpu, "build_targets": defaults.build_targets,
            "artifacts": defaults.artifacts, "revision": defaults.revision,
            "llama_cpp": defaults.llama_cpp},
            defines=tuple(defaults.cmake_defines.items())),
        Layer(f"{mx}:targets.{name}", {
            "platforms": spec.platforms, "cpu": spec.cpu, "toolkit": spec.toolkit,
            "gpu_archs": spec.gpu_archs, "build_targets": spec.build_targets,
            "artifacts": spec.artifacts, "revision": spec.revision, "runner": spec.runner,
            "container": spec.container, "wheel_requires": spec.wheel_requires,
            "build_image": images.build_image if images else None,
            "runtime_image": images.runtime_image if images else None,
            "llama_cpp": spec.llama_cpp},
            defines=tuple(spec.cmake_defines.items())),
        Layer("environment BUILDTOOL_CPU", {"cpu": env.get("BUILDTOOL_CPU") or None}),
        Layer("--cpu", {"cpu": overrides.cpu}),
        Layer("--toolkit", {"toolkit": overrides.toolkit}),
        Layer("--gpu-archs", {"gpu_archs": overrides.gpu_archs}),
        Layer("--llama-cpp", {"llama_cpp": overrides.llama_cpp}),
        Layer("-D (command line)", defines=overrides.defines),
    ]
    return below, above


def resolve(
    project: Project,
    name: str,
    *,
    lock: Lock | LockSet,
    host_cpu: CpuInfo | None,
    host_platform: str,
    overrides: Overrides = Overrides(),
    env: Mapping[str, str] | None = None,
    probe: bool = True,
) -> ResolvedTarget:
    env = os.environ if env is None else env
    spec = project.target(name)
    recipe = project.recipes[spec.recipe]
    below, above = config_layers(project, name, overrides, env)
    configured = below + above
    origins: dict[str, str] = {}
    lock = choose_lock(lock, pick(configured, "llama_cpp", origins), origins)

    platforms = pick(configured, "platforms", origins)
    if overrides.platform is not None:
        if overrides.platform not in platforms:
            raise UsageError(f"--platform {overrides.platform}: target {name} is built for "
                             f"{', '.join(platforms)} (from {origins['platforms']})")
        platform: Platform = check_value(Platform, overrides.platform, "--platform",
                                         error=UsageError)
        origins["platform"] = "--platform"
    else:
        platform = next((p for p in platforms if p == host_platform), platforms[0])
    # another Linux architecture is cross-compiled, by the families that can
    # (a plan for elsewhere — CI's jobs, probe=False — builds natively there)
    cross_build = probe and cross.can_cross(host_platform, platform) and REGISTRY[
        recipe.family].cross_compiles
    platform_supported = platform == host_platform or cross_build
    arch = normalize_arch(platform.split("-", 1)[1])

    cpu_policy = pick(configured, "cpu", origins)
    if cpu_policy not in CPU_POLICIES:
        near = suggest(cpu_policy, CPU_POLICIES)
        raise ConfigError(f"unknown CPU policy '{cpu_policy}' (from {origins['cpu']})",
                          hint=f"did you mean '{near}'?" if near else
                          "one of: " + ", ".join(CPU_POLICIES))
    effective_policy = cpu_policy
    if cpu_policy == "host" and (host_cpu is None or host_cpu.arch != arch) \
            and CPU.levels_of(arch):
        effective_policy = CPU.foreign_host_level(arch)
        origins["cpu"] += f" → {effective_policy} (planning for {platform} on another host)"
    floor = next((lv for lv in recipe.cpu_floor if CPU.arch_of_level(lv) == arch), None)
    if floor is not None:
        origins["cpu_floor"] = f"recipes/{spec.recipe}.yaml"
    try:
        avoid = frozenset(f for a in project.common.avoid_cpu_features
                          if a.applies(lock.build_number) for f in a.features)
        cpu = cpu_settings(effective_policy, arch, host_cpu, avoid, floor)
    except ValueError as exc:
        raise ConfigError(f"target {name}: {exc}", hint="choose a CPU policy for " + arch) \
            from exc

    backend = REGISTRY[recipe.family]
    toolkit = pick(configured, "toolkit", origins)
    # the family's default architectures for this toolkit sit below every configured layer
    archs_default = Layer(f"buildtool default for {recipe.family} {toolkit or ''}".strip(),
                          {"gpu_archs": backend.default_archs(toolkit) or None})
    gpu_archs = tuple(pick([archs_default, *configured], "gpu_archs", origins) or ())
    requires = tuple(
        ToolRequirement(tool=r.tool, install=_fill(r.install, toolkit),
                        version=_fill(r.version, toolkit))
        for r in (*project.common.requires, *recipe.requires)
    )
    ctx = BackendContext(target=name, platform=platform, toolkit=toolkit,
                         gpu_archs=gpu_archs, probe=probe,
                         requires=tuple((r.tool, r.version) for r in requires))
    dynamic = backend.dynamic(ctx)
    # what buildtool computes sits between the recipes and the matrix
    computed = [
        Layer(f"CPU policy {effective_policy}", defines=cpu.defines),
        *(Layer(f"buildtool ({why})", defines=((key, value),),
                host_only=dynamic.host_only & {key}) for key, value, why in dynamic.defines),
        Layer(f"buildtool ({platform} relocatable binaries)", defines=((
            "CMAKE_INSTALL_RPATH", "@loader_path" if platform.startswith("macos")
            else "$ORIGIN"),)),
        # this machine's cross toolchain has no OpenMP runtime: a native build elsewhere
        # (an image's build stage, CI's arm64 runner) keeps ggml's default
        *([Layer(f"buildtool (cross build for {platform}: the sysroot has no OpenMP "
                 "runtime for clang; ggml's own thread pool)", defines=(("GGML_OPENMP", "OFF"),),
                 host_only=frozenset({"GGML_OPENMP"}))] if cross_build else []),
        Layer(f"{lock.path.name} (no .git in a vendored tree)", defines=(
            ("LLAMA_BUILD_COMMIT", lock.short_commit),
            ("LLAMA_BUILD_NUMBER", lock.build_number))),
    ]
    defines: dict[str, str] = {}
    host_only: set[str] = set()
    for layer in (*below, *computed, *above):
        for key, value in layer.defines:
            defines.pop(key, None)  # re-insert: later layers appear later in the command
            defines[key] = format_value(value)
            origins[f"-D{key}"] = layer.origin
            if key in layer.host_only:
                host_only.add(key)
            else:
                host_only.discard(key)  # a configured value is no longer this machine's
    for option, needs in CPU.ggml_options(arch).items():
        if option in defines and avoid.intersection(needs):
            origins[f"-D{option}"] = "recipes/common.yaml avoid-cpu-features (known defect)"

    abi_floor, cpu_models = platform_claims(project, platform, overrides, env, origins)
    build_image = pick(configured, "build_image", origins)
    runtime_image = pick(configured, "runtime_image", origins)
    revision = pick(configured, "revision", origins)
    return ResolvedTarget(
        name=name, description=spec.description or recipe.description, recipe_name=spec.recipe,
        recipe=recipe, platform=platform, platforms=tuple(platforms),
        host_platform=host_platform,
        platform_supported=platform_supported, cross=cross_build,
        cpu_policy=effective_policy,
        cpu_requested=cpu_policy,
        cpu_level=cpu.level, cpu_features=cpu.required, toolkit=toolkit,
        gpu_archs=gpu_archs, build_targets=tuple(pick(configured, "build_targets", origins)),
        artifacts=tuple(pick(configured, "artifacts", origins)),
        defines=tuple(defines.items()), host_only=frozenset(host_only),
        configure_env=tuple((k, v) for k, v, _ in dynamic.env), requires=requires,
        smoke=project.matrix.defaults.smoke, origins=origins, lock=lock,
        # those of its architecture, for the pinned build
        avoided=tuple(a for a in project.common.avoid_cpu_features
                      if a.applies(lock.build_number)
                      and any(CPU.feature_arch(f) == arch for f in a.features)),
        audit_allow=(*project.common.audit_allow, *recipe.audit_allow), runtime=dynamic.runtime,
        revision=revision or 0,
        runner=pick(configured, "runner", origins),
        container=pick(configured, "container", origins),
        wheel_name=_fill(recipe.wheel_name, toolkit, recipe.family),
        wheel_requires=tuple(_fill(r, toolkit) for r in pick(configured, "wheel_requires",
                                                              origins) or ()),
        wheel_exclude=tuple(_fill(r, toolkit) for r in recipe.wheel_exclude),
        wheel_library_dirs=recipe.wheel_library_dirs,
        wheel_before_all=_fill(recipe.wheel_before_all, toolkit),
        wheel_environment=tuple((k, _fill(v, toolkit))
                                for k, v in recipe.wheel_environment.items()),
        dockerfile=recipe.docker.dockerfile if recipe.docker else None,
        build_image=_fill(build_image, toolkit) if build_image else None,
        runtime_image=_fill(runtime_image, toolkit) if runtime_image else None,
        abi_floor=abi_floor, cpu_models=cpu_models,
    )


def choose_lock(locks: Lock | LockSet, version: str | None, origins: dict[str, str]) -> Lock:
    """The lock of the version asked for (None: the default lock); ``origins['llama_cpp']``
    says who asked. A version the set lacks is a UsageError for --llama-cpp and a
    ConfigError for the matrix (load_project checks the matrix's first, with its line)."""
    if isinstance(locks, Lock):  # one lock given: only its version can be asked for
        if version is not None and version != locks.version:
            raise UsageError(f"llama.cpp {version} (from {origins['llama_cpp']}): only "
                             f"{locks.version} is available here")
        origins.setdefault("llama_cpp", locks.path.name)
        return locks
    try:
        lock = locks.get(version)
    except KeyError:
        asked = origins["llama_cpp"]
        error = UsageError if asked == "--llama-cpp" else ConfigError
        raise error(f"llama.cpp {version} (from {asked}) has no lock in "
                    f"{locks.default_path.parent}; locked versions: "
                    f"{', '.join(locks.versions())}",
                    hint=f"`buildtool vendor lock {version} --keep` (or --pypi VERSION "
                         "--build-number N --keep) writes it") from None
    origins["llama_cpp"] = f"{origins.get('llama_cpp', 'default')} → {lock.path.name}" \
        if version is not None else lock.path.name
    return lock


def parse_abi_floor(text: str, where: str,
                    error: type[BuildtoolError] = ConfigError) -> AbiVersions:
    """``glibc=2.31,libstdcxx=3.4.28`` (BUILDTOOL_ABI_FLOOR: ConfigError, exit 3;
    --abi-floor: UsageError, exit 2)."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in abi.RUNTIMES or not re.fullmatch(r"\d+(\.\d+){0,3}", value):
            raise error(f"{where}: '{part}' is not FAMILY=VERSION with FAMILY one of "
                              f"{', '.join(abi.RUNTIMES)} (e.g. glibc=2.31,libstdcxx=3.4.28)")
        values[key] = value
    return AbiVersions(**values)


def platform_claims(project: Project, platform: Platform, overrides: Overrides,
                    env: Mapping[str, str], origins: dict[str, str]) \
        -> tuple[AbiVersions | None, tuple[str, ...]]:
    """The ABI floor (matrix platforms < BUILDTOOL_ABI_FLOOR < --abi-floor) and the CPU
    models of the platform."""
    spec = project.matrix.platforms.get(platform)
    mx = project.matrix_path.name
    floor = spec.abi_floor if spec else None
    if floor is not None:
        origins["abi_floor"] = f"{mx}:platforms.{platform}"
    if env.get("BUILDTOOL_ABI_FLOOR"):
        floor = parse_abi_floor(env["BUILDTOOL_ABI_FLOOR"], "environment BUILDTOOL_ABI_FLOOR")
        origins["abi_floor"] = "environment BUILDTOOL_ABI_FLOOR"
    if overrides.abi_floor is not None:
        floor, origins["abi_floor"] = overrides.abi_floor, "--abi-floor"
    models = spec.cpu_models if spec else ()
    arch = CPU.arch(platform.split("-", 1)[1])
    wrong = [m for m in models if CPU.model_arch(m) != arch]
    if wrong:
        raise ConfigError(f"platforms.{platform}.cpu-models: {', '.join(wrong)} "
                          f"{'is' if len(wrong) == 1 else 'are'} not {arch}",
                          path=project.matrix_path)
    if models:
        origins["cpu_models"] = f"{mx}:platforms.{platform}"
    return floor, tuple(models)
