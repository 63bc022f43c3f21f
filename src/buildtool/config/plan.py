"""The exact commands a build runs, and the key that identifies its inputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtool import __version__, backends
from buildtool.cmd import format_argv
from buildtool.config import naming
from buildtool.config.resolve import ResolvedTarget
from buildtool.paths import cache_dir
from buildtool.toolchains import cross
from buildtool.toolchains import discovery as toolchain
from buildtool.toolchains.buildenv import BuildEnv

# The CMake project all artifacts are built from (llama.cpp as a subproject, and the
# install component naming what artifacts ship), relative to the repository root.
CMAKE_PROJECT = Path("recipes") / "cmake"
CMAKE_PROJECT_FILES = ("CMakeLists.txt", "ship.cmake")
CROSS_FILE = "cross-toolchain.cmake"  # a cross build's toolchain file, in its build directory



@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    target: ResolvedTarget
    source_dir: Path
    project_dir: Path  # recipes/cmake: what CMake configures (-S)
    build_dir: Path
    dist_dir: Path
    configure: tuple[str, ...]
    build: tuple[str, ...]
    cmake_defines: tuple[tuple[str, str], ...]  # every -D of `configure`, in order
    # defines whose values only hold on this machine (its tree, its tools, its compiler
    # launcher): an emitted project or an image's build stage finds its own
    host_only: frozenset[str] = frozenset()
    env: tuple[tuple[str, str], ...]
    key: str
    artifact_name: str
    toolchain: dict[str, dict[str, str | None]]
    source_tree_sha256: str | None
    build_env: BuildEnv | None = None  # where configure and build run (None: this host)
    mounts: tuple[Path, ...] = ()  # what a build environment sees of this host
    cross_file: str | None = None  # a cross build's CMake toolchain file (its text)
    ccache: bool = False  # buildtool launches the compilers through ccache (stats are read)

    @property
    def cross_file_path(self) -> Path:
        return self.build_dir / CROSS_FILE

    def write_cross_file(self) -> None:
        """Write the cross build's toolchain file into the build directory (configure
        reads it)."""
        if self.cross_file is not None:
            self.build_dir.mkdir(parents=True, exist_ok=True)
            self.cross_file_path.write_text(self.cross_file)

    @property
    def artifact_path(self) -> Path:
        return self.dist_dir / f"{self.artifact_name}.tar.gz"

    def shell_script(self) -> str:
        lines = [f"export {k}={v!r}" for k, v in self.env]
        lines += [format_argv(self.command(self.configure)), format_argv(self.command(self.build))]
        return "\n".join(lines)

    def command(self, argv: tuple[str, ...],
                extra_env: Mapping[str, str] | None = None) -> list[str]:
        """``argv`` as it runs: in the build environment, if there is one (with the plan's
        environment and ``extra_env``)."""
        if self.build_env is None:
            return list(argv)
        return self.build_env.wrap(argv, mounts=self.mounts,
                                   env={**dict(self.env), **(extra_env or {})})

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.to_json(), "key": self.key,
            "source_dir": str(self.source_dir), "project_dir": str(self.project_dir),
            "build_dir": str(self.build_dir),
            "artifact": str(self.artifact_path), "env": dict(self.env),
            "configure": list(self.configure), "build": list(self.build),
            "toolchain": self.toolchain,
            "build_env": self.build_env.describe() if self.build_env else None,
        }


def portable_defines(plan: BuildPlan) -> list[tuple[str, str]]:
    """plan.cmake_defines without what only holds on this machine (marked where it was
    made: the plan's tree and tools, a family's toolkit paths)."""
    return [(k, v) for k, v in plan.cmake_defines if k not in plan.host_only]


def artifact_name(rt: ResolvedTarget) -> str:
    target = f"{rt.name}-{rt.variant}" if rt.variant else rt.name
    return f"llama.cpp-b{rt.build_number}-{target}-{rt.platform}"


def toolchain_versions(rt: ResolvedTarget) -> dict[str, dict[str, str | None]]:
    names = ["cmake", "ninja", *([] if rt.cross else ["cc", "cxx"]),
             *backends.family(rt.family).tools]
    out: dict[str, dict[str, str | None]] = {}
    if rt.cross:  # clang and lld for the target, and its sysroot (toolchains.cross)
        for role, prog in cross.cross_tools().items():
            out[role] = {"path": str(prog.path) if prog else None,
                         "version": str(prog.version) if prog and prog.version else None}
        cp = cross.PLATFORMS[rt.platform]
        sysroot = cross.installed_sysroot(cp)
        out["sysroot"] = {"path": str(sysroot) if sysroot else None,
                          "version": cross.sysroot_version(cp) if sysroot else None}
    for req in rt.requires:
        if req.tool not in names:
            names.append(req.tool)
    for name in names:
        if name in out:  # a cross build's cc and cxx are clang's
            continue
        spec = next((r.version for r in rt.requires if r.tool == name), "")
        prog = toolchain.best(name, spec)
        out[name] = {"path": str(prog.path) if prog else None,
                     "version": str(prog.version) if prog and prog.version else None}
    return out


def project_defines(rt: ResolvedTarget, source_dir: Path) -> list[tuple[str, str]]:
    """The inputs of recipes/cmake: where llama.cpp is and what the artifacts ship."""
    return [("LLAMA_CPP_SOURCE_DIR", str(source_dir)),
            ("BUILDTOOL_PROGRAMS", ";".join(rt.build_targets)),
            ("BUILDTOOL_LIB_PATTERNS", ";".join(naming.LIB_PATTERNS)),
            ("BUILDTOOL_LEAVE_OUT", ";".join(naming.left_out_files(rt))),
            ("BUILDTOOL_DESTINATION", f"{naming.module(rt)}/bin")]


def project_digest(project_dir: Path) -> str | None:
    digest = hashlib.sha256()
    for name in CMAKE_PROJECT_FILES:
        try:
            digest.update(name.encode() + b"\0" + (project_dir / name).read_bytes())
        except OSError:
            return None
    return digest.hexdigest()


def compute_key(rt: ResolvedTarget, tree_sha256: str | None,
                tools: dict[str, dict[str, str | None]], project: str | None = None,
                build_env: str | None = None) -> str:
    """Hash of everything that determines the artifact's bytes."""
    payload = {
        **({"build_env": build_env} if build_env else {}),
        "buildtool": __version__, "source": tree_sha256, "target": rt.name, "project": project,
        "platform": rt.platform, "defines": list(rt.defines), "env": list(rt.configure_env),
        "build_targets": list(rt.build_targets), "recipe": rt.recipe_name,
        "cpu_features": list(rt.cpu_features), "toolchain": tools,
        **({"dropped_variants": list(rt.dropped_variants)} if rt.dropped_variants else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_plan(rt: ResolvedTarget, *, root: Path, source_dir: Path, tree_sha256: str | None,
              jobs: int | None = None, use_ccache: bool = True,
              build_root: Path | None = None, dist_dir: Path | None = None,
              build_env: BuildEnv | None = None) -> BuildPlan:
    tools = build_env.tools if build_env else toolchain_versions(rt)
    project_dir = root / CMAKE_PROJECT
    key = compute_key(rt, tree_sha256, tools, project_digest(project_dir),
                      build_env.name if build_env else None)
    name = artifact_name(rt)
    build_dir = (build_root or root / "build") / f"{rt.name}-{key[:12]}"
    cmake = tools["cmake"]["path"] or "cmake"
    ninja = tools["ninja"]["path"] or "ninja"
    defines = [("CMAKE_MAKE_PROGRAM", ninja), *project_defines(rt, source_dir), *rt.defines]
    env = dict(rt.configure_env)
    # this machine's tree, tools and launcher: an emitted project finds its own
    host_only = set(rt.host_only) | {"LLAMA_CPP_SOURCE_DIR", "CMAKE_MAKE_PROGRAM"}
    if build_env is not None:
        launch = (build_env.tools.get("ccache") or {}).get("path") if use_ccache else None
    else:
        found = toolchain.best("ccache") if use_ccache else None
        launch = str(found.path) if found else None
    mounts: tuple[Path, ...] = ()
    if build_env is not None:
        # its own compiler cache: another compiler, another ccache version
        env["CCACHE_DIR"] = str(env_ccache_dir(build_env))
        mounts = (root, source_dir, build_dir.parent, env_ccache_dir(build_env))
    ccache = False
    if launch is not None:
        langs = ["C", "CXX", *backends.family(rt.family).compiler_languages]
        # a launcher the user defined (-D, the matrix) wins: -D has the highest precedence
        launchers = [f"CMAKE_{lang}_COMPILER_LAUNCHER" for lang in langs
                     if rt.define(f"CMAKE_{lang}_COMPILER_LAUNCHER") is None]
        defines += [(name, launch) for name in launchers]
        ccache = bool(launchers)
        host_only.update(launchers)
        # Share hits between build directories: paths under the project become relative.
        env.setdefault("CCACHE_BASEDIR", str(root))
        env.setdefault("CCACHE_NOHASHDIR", "1")
    cross_file = None
    if rt.cross:
        paths = {role: (tools.get(role) or {}).get("path") for role in ("cc", "cxx", "ld",
                                                                         "sysroot")}
        if all(paths.values()):
            cross_file = cross.toolchain_file(
                cross.PLATFORMS[rt.platform], Path(str(paths["sysroot"])),
                Path(str(paths["cc"])), Path(str(paths["cxx"])), Path(str(paths["ld"])))
        defines.insert(0, ("CMAKE_TOOLCHAIN_FILE", str(build_dir / CROSS_FILE)))
        host_only.add("CMAKE_TOOLCHAIN_FILE")
    configure = [cmake, "-S", str(project_dir), "-B", str(build_dir), "-G", "Ninja"]
    configure += [f"-D{k}={v}" for k, v in defines]
    build = [cmake, "--build", str(build_dir), "--target", *rt.build_targets]
    build += ["--parallel", str(jobs or os.cpu_count() or 2)]
    return BuildPlan(target=rt, source_dir=source_dir, project_dir=project_dir,
                     build_dir=build_dir, dist_dir=dist_dir or root / "dist",
                     configure=tuple(configure), build=tuple(build),
                     cmake_defines=tuple(defines), host_only=frozenset(host_only),
                     env=tuple(env.items()), key=key,
                     artifact_name=name, toolchain=tools, source_tree_sha256=tree_sha256,
                     build_env=build_env, mounts=mounts, cross_file=cross_file,
                     ccache=ccache)


def env_ccache_dir(build_env: BuildEnv) -> Path:
    """The compiler cache of builds in one build environment (per distribution)."""
    slug = re.sub(r"[^a-z0-9.]+", "-", (build_env.name or build_env.spec).lower()).strip("-")
    path = cache_dir() / "ccache-env" / (slug or "unknown")
    path.mkdir(parents=True, exist_ok=True)
    return path
