"""Checks that stop a build before CMake runs, each with what to install."""

from __future__ import annotations

from buildtool.backends import REGISTRY, BackendContext, Problem
from buildtool.config.resolve import ResolvedTarget
from buildtool.errors import ToolchainError
from buildtool.toolchains import cross
from buildtool.toolchains import discovery as toolchain


def platform_fix(rt: ResolvedTarget) -> str:
    return REGISTRY[rt.family].platform_hint or \
        f"build it on a {' or '.join(rt.platforms)} machine, or let CI build it " \
        "(`buildtool matrix`)"


def check(rt: ResolvedTarget) -> list[Problem]:
    problems: list[Problem] = []
    if not rt.platform_supported:
        problems.append(Problem(
            f"{rt.name} is built for {', '.join(rt.platforms)} and this host is "
            f"{rt.host_platform}", platform_fix(rt)))
        return problems
    if rt.cross:
        problems.extend(cross_problems(rt))
    for req in rt.requires:
        if rt.cross and req.tool in ("cc", "cxx"):
            continue  # clang builds for the target instead (cross_problems)
        if toolchain.best(req.tool, req.version) is not None:
            continue
        others = toolchain.find_all(req.tool)
        wanted = f"{req.tool} {req.version}".strip()
        if others:
            found = "; ".join(p.describe() for p in others)
            what = f"{rt.name} needs {wanted}, found only: {found}"
        else:
            what = f"{rt.name} needs {wanted}: not found"
        problems.append(Problem(what, req.install or toolchain.install_hint(req.tool)))
    ctx = BackendContext(target=rt.name, platform=rt.platform, toolkit=rt.toolkit,
                         gpu_archs=rt.gpu_archs,
                         requires=tuple((r.tool, r.version) for r in rt.requires))
    problems.extend(REGISTRY[rt.family].preflight(ctx))
    return problems


def cross_problems(rt: ResolvedTarget) -> list[Problem]:
    """What a cross build for ``rt.platform`` lacks: clang, clang++ and lld of a recent
    enough version, and the platform's sysroot."""
    problems: list[Problem] = []
    for role, tool in cross.CROSS_TOOLS:
        if toolchain.best(tool, cross.CLANG_VERSION) is None:
            found = "; ".join(p.describe() for p in toolchain.find_all(tool)) or "not found"
            problems.append(Problem(f"cross-compiling {rt.name} for {rt.platform} needs {tool} "
                                    f"{cross.CLANG_VERSION} ({role}): {found}",
                                    cross.INSTALL_CLANG))
    cp = cross.PLATFORMS[rt.platform]
    if cross.installed_sysroot(cp) is None:
        problems.append(Problem(f"cross-compiling for {rt.platform} needs its sysroot "
                                f"(Debian {cp.suite} {cp.debian_arch}): not installed",
                                f"buildtool toolchain install {cp.sysroot_name}"))
    return problems


def require(rt: ResolvedTarget) -> None:
    problems = check(rt)
    if problems:
        lines = "\n".join(f"  - {p.what}\n    fix: {p.fix}" for p in problems)
        raise ToolchainError(f"cannot build target '{rt.name}' on this host:\n{lines}",
                             hint=f"`buildtool plan --target {rt.name}` shows the commands; "
                                  "`buildtool doctor` lists the tools found")
