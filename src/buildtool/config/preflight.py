"""Checks that stop a build before CMake runs, each with what to install."""

from __future__ import annotations

from buildtool.backends import REGISTRY, BackendContext, Problem
from buildtool.config.resolve import ResolvedTarget
from buildtool.errors import ToolchainError
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
    for req in rt.requires:
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


def require(rt: ResolvedTarget) -> None:
    problems = check(rt)
    if problems:
        lines = "\n".join(f"  - {p.what}\n    fix: {p.fix}" for p in problems)
        raise ToolchainError(f"cannot build target '{rt.name}' on this host:\n{lines}",
                             hint=f"`buildtool plan --target {rt.name}` shows the commands; "
                                  "`buildtool doctor` lists the tools found")
