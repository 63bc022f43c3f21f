"""Build environments: compile in an older distribution, so the artifact's ABI floor is that
distribution's glibc and libstdc++, not the build host's.

A binary needs the C library and C++ runtime versions it was *linked* against, so the only
way to ship binaries that run on older systems is to build them on one (ollama builds on
AlmaLinux 8, manylinux wheels on manylinux_2_28). buildtool keeps running on the host — its
Python, its cache, its audits — and runs only CMake's configure and build steps inside the
environment, with the source, the build directory and the compiler cache mounted at the
same paths, so nothing else changes:

* ``--build-env DIR``: a root file system (``debootstrap bullseye DIR``, see
  ``scripts/build-root.sh``), entered with chroot in a private mount namespace (root only;
  nothing stays mounted afterwards; the mount points, empty directories at the mounted
  paths, are made inside DIR);
* ``--build-env IMAGE``: a container image (docker or podman; the CI workflow uses this), the
  same image an image's Dockerfile build stage can start from.

The environment must hold cmake (≥ 3.21), ninja, a C and C++ compiler and, optionally,
ccache; they are found and versioned inside it, recorded in the manifest and part of the
build key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildtool import cmd
from buildtool.errors import CommandError, ToolchainError, UsageError
from buildtool.toolchains.engines import Engine

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# the names buildtool records (toolchain keys) → the commands looked for inside
COMMANDS: Mapping[str, str] = {"cmake": "cmake", "ninja": "ninja", "cc": "cc", "cxx": "c++",
                               "ccache": "ccache"}
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
_ENTER_ROOT = (
    # $0: the root; $1: how many directories to mount; then those directories, then argv
    'root=$0; n=$1; shift; '
    'while [ "$n" -gt 0 ]; do mkdir -p "$root$1" && mount --bind "$1" "$root$1" || exit 125; '
    'shift; n=$((n-1)); done; '
    'mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" || exit 125; '
    'exec chroot "$root" "$@"')


@dataclass(frozen=True, kw_only=True)
class BuildEnv:
    """Where configure and build run: a root file system or a container image."""

    spec: str  # as given (--build-env)
    root: Path | None = None
    image: str | None = None
    engine: Engine | None = None
    name: str = ""  # the distribution (os-release PRETTY_NAME)
    tools: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def describe(self) -> str:
        where = f"root {self.root}" if self.root else f"image {self.image}"
        return f"{self.name or 'unknown distribution'} ({where})"

    def wrap(self, argv: Sequence[str], *, mounts: Iterable[Path],
             env: Mapping[str, str]) -> list[str]:
        """``argv`` run inside the environment with ``mounts`` at their own paths and only
        ``env`` (plus PATH and HOME) in its environment."""
        dirs = sorted({str(Path(m)) for m in mounts})
        settings = {"PATH": PATH, "HOME": "/root", "LC_ALL": "C.UTF-8", **env}
        if self.root is not None:
            return ["unshare", "--mount", "--fork", "--", "sh", "-c", _ENTER_ROOT,
                    str(self.root), str(len(dirs)), *dirs, "/usr/bin/env", "-i",
                    *(f"{k}={v}" for k, v in settings.items()), *argv]
        assert self.engine is not None and self.image is not None
        if os.getuid() != 0:
            settings["HOME"] = "/tmp"
        run = self.engine.run(self.image, argv[0], list(argv[1:]),
                              mounts=[(Path(d), d) for d in dirs], env=settings)
        if os.getuid() != 0:  # files in the build directory stay the user's
            run[2:2] = ["--user", f"{os.getuid()}:{os.getgid()}"]
        return run

    def capture(self, argv: Sequence[str], timeout: float = 120) -> str:
        try:
            return cmd.capture(self.wrap(argv, mounts=(), env={}), timeout=timeout)
        except CommandError as exc:
            raise ToolchainError(f"build environment {self.spec}: {' '.join(argv)} failed: "
                                 + " ".join(exc.tail[-3:])) from None


def is_image(spec: str) -> bool:
    """Whether ``spec`` names a container image (not a directory, an image reference)."""
    return not Path(spec).is_dir() and not spec.startswith((".", "/")) and \
        _IMAGE.fullmatch(spec) is not None


def open_env(spec: str, *, engine: Engine | None = None,
             extra_tools: Sequence[str] = ()) -> BuildEnv:
    """The build environment ``spec`` names (a directory: a root file system; otherwise an
    image reference, run with ``engine``), its tools found and versioned inside it."""
    path = Path(spec)
    if path.is_dir():
        root = path.resolve()
        if os.geteuid() != 0:
            raise UsageError("--build-env DIR needs root (chroot in a private mount "
                             "namespace); use a container image with docker or podman")
        for needed in ("proc", "dev", "tmp", "usr/bin/env"):
            if not (root / needed).exists():
                raise UsageError(f"--build-env {spec}: not a root file system (no /{needed})",
                                 hint="make one with scripts/build-root.sh")
        env = BuildEnv(spec=spec, root=root, name=_pretty_name(root / "etc/os-release"))
    elif not is_image(spec):
        raise UsageError(f"--build-env {spec}: neither a directory nor an image reference")
    else:
        if engine is None or engine.name == "buildah":
            raise UsageError("--build-env IMAGE runs the build in a container: it needs "
                             "docker or podman (--engine)")
        env = BuildEnv(spec=spec, image=spec, engine=engine)
        env = BuildEnv(spec=spec, image=spec, engine=engine,
                       name=_pretty_name_text(env.capture(["cat", "/etc/os-release"])))
    return BuildEnv(spec=env.spec, root=env.root, image=env.image, engine=env.engine,
                    name=env.name, tools=probe(env, extra_tools))


def probe(env: BuildEnv, extra_tools: Sequence[str] = ()) -> dict[str, dict[str, str | None]]:
    """Each tool's path and version inside ``env``; cmake, ninja and the compilers must be
    there (ToolchainError names what is missing)."""
    names = {**COMMANDS, **{t: t for t in extra_tools}}
    script = "; ".join(
        f'p=$(command -v {c}) && echo "@{k}=$p" && "$p" --version 2>&1 | head -n 1 '
        f'| sed "s/^/@{k}:/"' for k, c in names.items())
    out = env.capture(["sh", "-c", script + "; true"])
    tools: dict[str, dict[str, str | None]] = {k: {"path": None, "version": None}
                                               for k in names}
    for line in out.splitlines():
        m = re.fullmatch(r"@([a-z0-9_+-]+)([=:])(.*)", line.strip())
        if m is None or m[1] not in tools:
            continue
        if m[2] == "=":
            tools[m[1]]["path"] = m[3]
        elif (v := _VERSION.search(m[3])) is not None:
            tools[m[1]]["version"] = v[1]
    missing = [k for k in names if k != "ccache" and tools[k]["path"] is None]
    if missing:
        raise ToolchainError(f"build environment {env.spec} lacks {', '.join(missing)}",
                             hint="it needs cmake (>= 3.21), ninja and a C/C++ compiler: "
                                  "scripts/build-root.sh makes one")
    cmake = tools["cmake"]["version"]
    if cmake is not None and tuple(int(p) for p in cmake.split(".")[:2]) < (3, 21):
        raise ToolchainError(f"build environment {env.spec} has cmake {cmake}; 3.21 or newer "
                             "is needed", hint="scripts/build-root.sh installs cmake from PyPI")
    return tools


def _pretty_name(path: Path) -> str:
    try:
        return _pretty_name_text(path.read_text(errors="replace"))
    except OSError:
        return ""


def _pretty_name_text(text: str) -> str:
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m[1].strip()[:100] if m else ""
