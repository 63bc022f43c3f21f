"""The exact commands a build runs, and the key that identifies its inputs."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtool import __version__, toolchain
from buildtool.cmd import format_argv
from buildtool.resolve import ResolvedTarget

FAMILY_TOOLS = {"cuda": ("nvcc",), "hip": ("hipcc",), "sycl": ("icpx",), "vulkan": ("glslc",),
                "metal": ("xcrun",), "cpu": ()}


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    target: ResolvedTarget
    source_dir: Path
    build_dir: Path
    dist_dir: Path
    configure: tuple[str, ...]
    build: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    key: str
    artifact_name: str
    toolchain: dict[str, dict[str, str | None]]
    source_tree_sha256: str | None

    @property
    def artifact_path(self) -> Path:
        return self.dist_dir / f"{self.artifact_name}.tar.gz"

    def shell_script(self) -> str:
        lines = [f"export {k}={v!r}" for k, v in self.env]
        lines += [format_argv(self.configure), format_argv(self.build)]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.to_json(), "key": self.key,
            "source_dir": str(self.source_dir), "build_dir": str(self.build_dir),
            "artifact": str(self.artifact_path), "env": dict(self.env),
            "configure": list(self.configure), "build": list(self.build),
            "toolchain": self.toolchain,
        }


def artifact_name(rt: ResolvedTarget) -> str:
    target = f"{rt.name}-{rt.variant}" if rt.variant else rt.name
    return f"llama.cpp-b{rt.build_number}-{target}-{rt.platform}"


def toolchain_versions(rt: ResolvedTarget) -> dict[str, dict[str, str | None]]:
    names = ["cmake", "ninja", "cc", "cxx", *FAMILY_TOOLS.get(rt.family, ())]
    out: dict[str, dict[str, str | None]] = {}
    for req in rt.requires:
        if req.tool not in names:
            names.append(req.tool)
    for name in names:
        spec = next((r.version for r in rt.requires if r.tool == name), "")
        prog = toolchain.best(name, spec)
        out[name] = {"path": str(prog.path) if prog else None,
                     "version": str(prog.version) if prog and prog.version else None}
    return out


def compute_key(rt: ResolvedTarget, tree_sha256: str | None,
                tools: dict[str, dict[str, str | None]]) -> str:
    """Hash of everything that determines the artifact's bytes."""
    payload = {
        "buildtool": __version__, "source": tree_sha256, "target": rt.name,
        "platform": rt.platform, "defines": list(rt.defines), "env": list(rt.configure_env),
        "build_targets": list(rt.build_targets), "recipe": rt.recipe_name,
        "cpu_features": list(rt.cpu_features), "toolchain": tools,
        **({"dropped_variants": list(rt.dropped_variants)} if rt.dropped_variants else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_plan(rt: ResolvedTarget, *, root: Path, source_dir: Path, tree_sha256: str | None,
              jobs: int | None = None, use_ccache: bool = True,
              build_root: Path | None = None, dist_dir: Path | None = None) -> BuildPlan:
    tools = toolchain_versions(rt)
    key = compute_key(rt, tree_sha256, tools)
    name = artifact_name(rt)
    build_dir = (build_root or root / "build") / f"{rt.name}-{key[:12]}"
    cmake = tools["cmake"]["path"] or "cmake"
    ninja = tools["ninja"]["path"] or "ninja"
    configure = [cmake, "-S", str(source_dir), "-B", str(build_dir), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    configure += [f"-D{k}={v}" for k, v in rt.defines]
    env = dict(rt.configure_env)
    ccache = toolchain.best("ccache") if use_ccache else None
    if ccache is not None:
        launch = str(ccache.path)
        langs = ["C", "CXX"] + (["CUDA"] if rt.family == "cuda" else [])
        configure += [f"-DCMAKE_{lang}_COMPILER_LAUNCHER={launch}" for lang in langs]
        # Share hits between build directories: paths under the project become relative.
        env.setdefault("CCACHE_BASEDIR", str(root))
        env.setdefault("CCACHE_NOHASHDIR", "1")
    build = [cmake, "--build", str(build_dir), "--target", *rt.build_targets]
    build += ["--parallel", str(jobs or os.cpu_count() or 2)]
    return BuildPlan(target=rt, source_dir=source_dir, build_dir=build_dir,
                     dist_dir=dist_dir or root / "dist", configure=tuple(configure),
                     build=tuple(build), env=tuple(env.items()), key=key, artifact_name=name,
                     toolchain=tools, source_tree_sha256=tree_sha256)
