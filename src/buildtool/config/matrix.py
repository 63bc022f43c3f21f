"""`buildtool matrix` rows and `detect`'s recommendation: which targets build here, and why not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import SpecifierSet

from buildtool.backends import REGISTRY
from buildtool.config import naming, preflight
from buildtool.config.resolve import Overrides, ResolvedTarget
from buildtool.config.session import Session
from buildtool.detect.host import Gpu
from buildtool.errors import BuildtoolError
from buildtool.toolchains import discovery as toolchain
from buildtool.toolchains.discovery import Program


@dataclass(frozen=True)
class Row:
    target: ResolvedTarget
    buildable: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        rt = self.target
        return {
            "target": rt.name, "recipe": rt.recipe_name, "family": rt.family,
            "backend": rt.backend, "description": rt.description,
            "platforms": list(rt.platforms),
            "artifacts": list(rt.artifacts), "toolkit": rt.toolkit,
            "cpu_policy": rt.cpu_policy, "buildable_here": self.buildable,
            "reasons": list(self.reasons),
        }


def rows(session: Session) -> list[Row]:
    out: list[Row] = []
    for name in session.project.matrix.targets:
        rt = session.resolve(name)
        problems = preflight.check(rt)
        out.append(Row(rt, not problems, tuple(str(p) for p in problems)))
    return out


@dataclass(frozen=True)
class ToolUse:
    """One candidate of one tool: the targets whose requirement it satisfies, and why it
    cannot serve (e.g. a CUDA toolkit without cuBLAS)."""

    program: Program
    enables: tuple[str, ...]
    unusable: str | None = None

    def to_json(self) -> dict[str, Any]:
        p = self.program
        return {"path": str(p.path), "version": str(p.version) if p.version else None,
                "enables": list(self.enables), "unusable": self.unusable}


def _unusable(program: Program) -> str | None:
    """Why a found tool cannot serve (the families say: a CUDA toolkit without cuBLAS)."""
    return next((why for b in REGISTRY.values() if (why := b.tool_unusable(program))), None)


def tool_uses(session: Session, names: Iterable[str] | None = None) -> dict[str, list[ToolUse]]:
    """Every candidate of every tool (`doctor`), with the targets it enables here."""
    targets = [session.resolve(name) for name in session.project.matrix.targets]
    result: dict[str, list[ToolUse]] = {}
    for name, programs in toolchain.inventory(names).items():
        uses: list[ToolUse] = []
        for program in programs:
            unusable = _unusable(program)
            enables = [] if unusable else [
                rt.name for rt in targets if rt.platform_supported and any(
                    req.tool == name and (not req.version or (
                        program.version is not None and SpecifierSet(req.version).contains(
                            program.version, prereleases=True)))
                    for req in rt.requires)]
            uses.append(ToolUse(program, tuple(enables), unusable))
        result[name] = uses
    return result


def ci_targets(session: Session) -> list[ResolvedTarget]:
    """Every target as CI builds it: resolved like any build (defaults, BUILDTOOL_CPU and
    all), planned for its first platform without probing this machine's tools."""
    return [session.resolve(name, probe=False) for name in session.project.matrix.targets]


def ci_jobs(session: Session) -> list[tuple[ResolvedTarget, str]]:
    """Every (target, runner) CI builds: each target on its first platform (its own runner),
    and on each further Linux platform it lists whose matrix entry names a runner that
    builds it natively (linux-aarch64 on arm64 runners)."""
    platforms = session.project.matrix.platforms
    jobs: list[tuple[ResolvedTarget, str]] = []
    for rt in ci_targets(session):
        jobs.append((rt, rt.runner))
        for platform in rt.platforms[1:]:
            spec = platforms.get(platform)
            if platform.startswith("linux-") and spec is not None and spec.runner:
                jobs.append((session.resolve(rt.name, Overrides(platform=platform),
                                             probe=False), spec.runner))
    return jobs


def ci_container(rt: ResolvedTarget) -> str:
    """The container a CI job builds the target in ('' : on the runner itself): the
    matrix's, else the recipe's build image for families whose toolchain lives in one."""
    return rt.container or (rt.build_image or "" if REGISTRY[rt.family].ci_container else "")


def ci_cpu(rt: ResolvedTarget) -> str:
    """Release builds are portable: a target tuned to the build host ships all variants,
    unless its family builds on the hardware it targets (metal on Apple silicon runners)."""
    if rt.cpu_requested == "host" and not REGISTRY[rt.family].ci_builds_on_target:
        return "all-variants"
    return rt.cpu_requested


BUILD_ENV = "recipes/build-env/Dockerfile"


def github_matrix(session: Session) -> dict[str, Any]:
    """The job matrix for GitHub Actions: one entry per target and platform (:func:`ci_jobs`)."""
    include: list[dict[str, Any]] = []
    for rt, runner in ci_jobs(session):
        backend = REGISTRY[rt.family]
        # Hosted runners have no CUDA/ROCm/oneAPI GPU: those artifacts are smoke-tested on a
        # lab machine (`buildtool smoke`); Vulkan runs on Mesa's lavapipe, Metal on macOS.
        container = ci_container(rt)
        # on the runner itself: the recipe's packages, then the toolchain buildtool provisions
        packages = "" if container else " ".join(rt.recipe.ci_packages)
        toolchain = "" if container else backend.toolchain_for(rt.toolkit) or ""
        # a target that needs nothing but compilers compiles in the older build environment
        # (recipes/build-env: Debian 11), so its tarball runs on older distributions too
        build_env = BUILD_ENV if rt.platform.startswith("linux-") and not (
            container or packages or toolchain) else ""
        include.append({"target": rt.name, "recipe": rt.recipe_name, "family": rt.family,
                        "platform": rt.platform, "runner": runner, "cpu": ci_cpu(rt),
                        "toolkit": rt.toolkit or "", "container": container,
                        "packages": packages, "toolchain": toolchain, "build_env": build_env,
                        "smoke": "--no-smoke" if backend.ci_container else "--smoke"})
    return {"include": include}


# Wheels per OS. Linux: cibuildwheel's manylinux containers, where each recipe installs its
# toolchain (wheel-before-all) — except families whose toolchain exists only in their vendor
# image, where `buildtool build --artifact wheel` builds and repairs the wheel. macOS and
# Windows runners get the families whose `wheel_oses` name them.
WHEEL_RUNNERS = {"linux": "ubuntu-24.04", "macos": "macos-14", "windows": "windows-2022"}
RUNNER_PREFIX = {"linux": "ubuntu", "macos": "macos", "windows": "windows"}


def github_wheel_matrix(session: Session) -> dict[str, Any]:
    """The wheel jobs: one entry per target and OS its platforms name — on Linux one per
    platform with a runner of its own (arm64 wheels are built natively, not emulated);
    ``archs`` is cibuildwheel's CIBW_ARCHS for the job."""
    include: list[dict[str, Any]] = []
    for rt, runner in ci_jobs(session):
        backend = REGISTRY[rt.family]
        first = rt.platform == rt.platforms[0]
        for os_name, default_runner in WHEEL_RUNNERS.items():
            if os_name not in backend.wheel_oses:
                continue
            if os_name == "linux":  # this job's platform only
                platforms = [rt.platform] if rt.platform.startswith("linux-") else []
            elif first:  # other OSes once per target, with the archs it lists there
                platforms = [p for p in rt.platforms if p.startswith(os_name + "-")]
            else:
                platforms = []
            archs = [naming.CI_ARCHS[p] for p in platforms if p in naming.CI_ARCHS]
            if not archs:
                continue
            job_runner = runner if runner.startswith(RUNNER_PREFIX[os_name]) \
                else default_runner
            container = os_name == "linux" and backend.wheels_in_container
            include.append({"target": rt.name, "family": rt.family, "os": os_name,
                            "job": platforms[0] if os_name == "linux" else os_name,
                            "archs": " ".join(archs), "runner": job_runner, "cpu": ci_cpu(rt),
                            "wheels": "container" if container else "cibuildwheel",
                            "container": ci_container(rt) if container else "",
                            "smoke": "--no-smoke" if backend.ci_container else "--smoke"})
    return {"include": include}


def github_image_matrix(session: Session) -> dict[str, Any]:
    """The image jobs: one `buildtool bake --platform P --llama-cpp V` per Linux platform
    with a runner that builds it natively and llama.cpp version its images build (one
    build context holds one tree), with the targets it bakes."""
    bakes: dict[tuple[str, str], list[str]] = {}
    for rt, _ in ci_jobs(session):
        if rt.dockerfile:
            bakes.setdefault((rt.platform, rt.lock.version), []).append(rt.name)
    include: list[dict[str, Any]] = []
    for platform, spec in session.project.matrix.platforms.items():
        if not platform.startswith("linux-") or not spec.runner:
            continue
        for (where, version), names in bakes.items():
            if where == platform:
                include.append({"platform": platform, "runner": spec.runner,
                                "llama_cpp": version,
                                "targets": " ".join(f"-t {n}" for n in names)})
    return {"include": include}


def recommend(session: Session, gpus: tuple[Gpu, ...]) -> tuple[str, str]:
    """The target `build` uses when none is given, and why: for each GPU found, the targets
    of the families that serve its vendor (the vendor's own first, then Vulkan), newest
    toolkit first, whose toolchain is here; else the first target without a GPU."""
    targets = session.project.matrix.targets

    def family_of(name: str) -> str:
        return session.project.recipes[targets[name].recipe].family

    skipped: list[str] = []
    for gpu in gpus:
        serving = sorted((b for b in REGISTRY.values() if gpu.vendor in b.gpu_vendors),
                         key=lambda b: b.gpu_preference)
        for backend in serving:
            names = [n for n in targets if family_of(n) == backend.family]
            # newest toolkit first (cublas12 before cublas11)
            for name in sorted(names, key=lambda n: targets[n].toolkit or "", reverse=True):
                try:
                    problems = preflight.check(session.resolve(name))
                except BuildtoolError as exc:
                    skipped.append(f"{name}: {exc.message}")
                    continue
                if not problems:
                    return name, f"{gpu.vendor} GPU found ({gpu.name}) and {name}'s toolchain " \
                                 "is installed"
                skipped.append(f"{name}: {problems[0].what}")
    cpu = next((n for n, s in targets.items() if not session.project.recipes[s.recipe].gpu),
               "cpu")
    if skipped:
        return cpu, "no GPU target can be built here (" + "; ".join(skipped) + ")"
    if gpus:
        return cpu, "the GPUs found have no target in the matrix"
    return cpu, "no GPU found"
