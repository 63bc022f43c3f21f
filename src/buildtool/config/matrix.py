"""`buildtool matrix` rows and `detect`'s recommendation: which targets build here, and why not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import SpecifierSet

from buildtool.backends.cuda_toolkit import missing_parts, toolkit_root
from buildtool.config import preflight
from buildtool.config.resolve import ResolvedTarget
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
    if program.name == "nvcc":
        missing = missing_parts(toolkit_root(program.path))
        return f"its toolkit lacks {', '.join(missing)}" if missing else None
    return None


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


def github_matrix(session: Session) -> dict[str, Any]:
    """The job matrix for GitHub Actions: one entry per target and platform."""
    include: list[dict[str, Any]] = []
    for name, spec in session.project.matrix.targets.items():
        recipe = session.project.recipes[spec.recipe]
        platforms = spec.platforms or recipe.platforms
        runner = spec.runner or "ubuntu-24.04"
        # Release builds are portable: the cpu family ships all variants, not the runner's CPU.
        cpu = "all-variants" if recipe.family == "cpu" else \
            spec.cpu or recipe.cpu or "all-variants"
        toolkit = spec.toolkit or recipe.toolkit or ""
        container = spec.container or (
            (spec.docker and spec.docker.build_image)
            or recipe.docker.build_image.format(toolkit=toolkit)
            if recipe.docker and recipe.family in CONTAINER_FAMILIES else "")
        # Hosted runners have no CUDA/ROCm/oneAPI GPU: those artifacts are smoke-tested on a
        # lab machine (`buildtool smoke`); Vulkan runs on Mesa's lavapipe, Metal on macOS.
        smoke = recipe.family not in CONTAINER_FAMILIES
        include.append({"target": name, "recipe": spec.recipe, "family": recipe.family,
                        "platform": platforms[0], "runner": runner, "cpu": cpu,
                        "toolkit": toolkit, "container": container,
                        "smoke": "--smoke" if smoke else "--no-smoke"})
    return {"include": include}


# Wheels per OS. Linux: cibuildwheel's manylinux containers, where each recipe installs its
# toolchain (wheel-before-all) — except ROCm and oneAPI, which exist only in their vendor
# images, where `buildtool build --artifact wheel` builds and repairs the wheel. macOS and
# Windows runners get the families that need no toolchain beyond the compiler.
WHEEL_RUNNERS = {"linux": "ubuntu-24.04", "macos": "macos-14", "windows": "windows-2022"}
RUNNER_PREFIX = {"linux": "ubuntu", "macos": "macos", "windows": "windows"}
WHEEL_FAMILIES_OFF_LINUX = {"macos": ("cpu", "metal"), "windows": ("cpu",)}


def github_wheel_matrix(session: Session) -> dict[str, Any]:
    """The wheel jobs: one entry per target and OS its platforms name."""
    jobs = {(e["target"]): e for e in github_matrix(session)["include"]}
    include: list[dict[str, Any]] = []
    for name, spec in session.project.matrix.targets.items():
        recipe = session.project.recipes[spec.recipe]
        platforms = spec.platforms or recipe.platforms
        for os_name, default_runner in WHEEL_RUNNERS.items():
            if not any(p.startswith(os_name + "-") for p in platforms):
                continue
            if os_name != "linux" and recipe.family not in WHEEL_FAMILIES_OFF_LINUX[os_name]:
                continue
            job = jobs[name]
            runner = job["runner"] if job["runner"].startswith(RUNNER_PREFIX[os_name]) \
                else default_runner
            container = os_name == "linux" and recipe.family in ("hip", "sycl")
            include.append({"target": name, "family": recipe.family, "os": os_name,
                            "runner": runner, "cpu": job["cpu"],
                            "wheels": "container" if container else "cibuildwheel",
                            "container": job["container"] if container else "",
                            "smoke": job["smoke"]})
    return {"include": include}


CONTAINER_FAMILIES = ("cuda", "hip", "sycl")
GPU_PREFERENCE = {"NVIDIA": ("cuda", "vulkan"), "AMD": ("hip", "vulkan"),
                  "Intel": ("sycl", "vulkan"), "Apple": ("metal",)}


def recommend(session: Session, gpus: tuple[Gpu, ...]) -> tuple[str, str]:
    """The target `build` uses when none is given, and why."""
    targets = session.project.matrix.targets
    skipped: list[str] = []
    for gpu in gpus:
        for family in GPU_PREFERENCE.get(gpu.vendor, ()):
            names = [n for n, s in targets.items()
                     if session.project.recipes[s.recipe].family == family]
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
    cpu = next((n for n, s in targets.items()
                if session.project.recipes[s.recipe].family == "cpu"), "cpu")
    if skipped:
        return cpu, "no GPU target can be built here (" + "; ".join(skipped) + ")"
    if gpus:
        return cpu, "the GPUs found have no target in the matrix"
    return cpu, "no GPU found"
