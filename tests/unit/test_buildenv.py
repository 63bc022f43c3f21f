"""Build environments: the commands that enter a root file system or a container, the tools
found inside, and a plan whose configure and build run there. (A real build in Debian 11 is
in tests/integration/test_claims.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from buildtool.config.plan import make_plan
from buildtool.errors import ToolchainError, UsageError
from buildtool.toolchains import buildenv
from buildtool.toolchains.buildenv import BuildEnv
from buildtool.toolchains.engines import Engine
from tests.unit.helpers import ROOT
from tests.unit.test_resolve import host, res

# what the probe script prints inside Debian 11 with cmake from PyPI (captured)
PROBE = """@cmake=/usr/local/bin/cmake
@cmake:cmake version 3.31.10
@ninja=/usr/bin/ninja
@ninja:1.10.1
@cc=/usr/bin/cc
@cc:cc (Debian 10.2.1-6) 10.2.1 20210110
@cxx=/usr/bin/c++
@cxx:c++ (Debian 10.2.1-6) 10.2.1 20210110
@ccache=/usr/bin/ccache
@ccache:ccache version 4.2
"""
TOOLS = {"cmake": {"path": "/usr/local/bin/cmake", "version": "3.31.10"},
         "ninja": {"path": "/usr/bin/ninja", "version": "1.10.1"},
         "cc": {"path": "/usr/bin/cc", "version": "10.2.1"},
         "cxx": {"path": "/usr/bin/c++", "version": "10.2.1"},
         "ccache": {"path": "/usr/bin/ccache", "version": "4.2"}}


def test_a_root_file_system_is_entered_in_a_private_mount_namespace(tmp_path: Path) -> None:
    env = BuildEnv(spec=str(tmp_path), root=tmp_path, name="Debian GNU/Linux 11 (bullseye)")
    argv = env.wrap(["cmake", "--version"], mounts=[Path("/work/b"), Path("/work/a")],
                    env={"CCACHE_DIR": "/c"})
    assert argv[:5] == ["unshare", "--mount", "--fork", "--", "sh"]
    script = argv[6]
    assert "mount --bind" in script and 'exec chroot "$root"' in script
    # the root, how many directories, the directories (sorted), then a clean environment
    assert argv[7:11] == [str(tmp_path), "2", "/work/a", "/work/b"]
    assert argv[11:13] == ["/usr/bin/env", "-i"]
    assert "CCACHE_DIR=/c" in argv and any(a.startswith("PATH=/usr/local/sbin") for a in argv)
    assert argv[-2:] == ["cmake", "--version"]
    assert env.describe() == f"Debian GNU/Linux 11 (bullseye) (root {tmp_path})"


def test_an_image_runs_in_a_throwaway_container_with_the_same_paths() -> None:
    podman = Engine(name="podman", path="/usr/bin/podman", version="4.3.1")
    env = BuildEnv(spec="buildtool-build-env", image="buildtool-build-env", engine=podman)
    argv = env.wrap(["cmake", "--build", "/work/b"], mounts=[Path("/work/b")], env={})
    assert argv[:2] == ["/usr/bin/podman", "run"]
    assert "/work/b:/work/b" in argv
    assert argv[-5:] == ["--entrypoint", "cmake", "buildtool-build-env", "--build", "/work/b"]


def test_what_is_not_an_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a root file system"):
        buildenv.open_env(str(tmp_path))
    with pytest.raises(UsageError, match="neither a directory nor an image reference"):
        buildenv.open_env("./no/such/dir")
    with pytest.raises(UsageError, match="needs docker or podman"):
        buildenv.open_env("debian:bullseye",
                          engine=Engine(name="buildah", path="/usr/bin/buildah", version="1"))


def test_tools_are_found_and_versioned_inside(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    env = BuildEnv(spec="r", root=tmp_path)
    monkeypatch.setattr(BuildEnv, "capture", lambda self, argv, timeout=120: PROBE)
    assert buildenv.probe(env) == TOOLS
    old = PROBE.replace("3.31.10", "3.18.4")
    monkeypatch.setattr(BuildEnv, "capture", lambda self, argv, timeout=120: old)
    with pytest.raises(ToolchainError, match=r"has cmake 3\.18\.4; 3\.21 or newer"):
        buildenv.probe(env)
    bare = "\n".join(line for line in PROBE.splitlines() if "ninja" not in line)
    monkeypatch.setattr(BuildEnv, "capture", lambda self, argv, timeout=120: bare)
    with pytest.raises(ToolchainError, match="lacks ninja"):
        buildenv.probe(env)


def test_a_plan_in_a_build_environment(data: Path, fake_tools: object, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    rt = res("cpu", host(data))
    env = BuildEnv(spec="/roots/bullseye", root=Path("/roots/bullseye"),
                   name="Debian GNU/Linux 11 (bullseye)", tools=TOOLS)
    here = make_plan(rt, root=ROOT, source_dir=ROOT / "vendor" / "llama.cpp",
                     tree_sha256="0" * 64, build_root=tmp_path / "build")
    there = make_plan(rt, root=ROOT, source_dir=ROOT / "vendor" / "llama.cpp",
                      tree_sha256="0" * 64, build_root=tmp_path / "build", build_env=env)
    assert there.key != here.key  # another compiler, another environment: another build
    assert there.toolchain == TOOLS
    assert there.configure[0] == "/usr/local/bin/cmake"
    assert "-DCMAKE_MAKE_PROGRAM=/usr/bin/ninja" in there.configure
    assert "-DCMAKE_CXX_COMPILER_LAUNCHER=/usr/bin/ccache" in there.configure
    ccache_dir = Path(dict(there.env)["CCACHE_DIR"])
    assert ccache_dir == tmp_path / "cache" / "ccache-env" / "debian-gnu-linux-11-bullseye"
    assert set(there.mounts) == {ROOT, ROOT / "vendor" / "llama.cpp", tmp_path / "build",
                                 ccache_dir}
    command = there.command(there.configure)
    assert command[0] == "unshare" and command[-len(there.configure):] == list(there.configure)
    assert here.command(here.configure) == list(here.configure)
    assert dataclasses.replace(there, build_env=None).command(there.build) == list(there.build)
