"""Container engines: which one builds and runs images here, and the commands each takes.

buildtool drives whichever exists, in this order (``--engine`` or ``BUILDTOOL_ENGINE`` picks
one): **docker** with the buildx plugin and a reachable daemon, **podman**, **buildah**
(daemonless; it runs programs with ``buildah from`` + ``buildah run``). Each engine keeps its
own settings: storage driver, OCI runtime, isolation and ulimits come from the standard
containers files (``storage.conf``, ``containers.conf``, ``BUILDAH_ISOLATION``), not from
buildtool. The argv builders here are pure functions, tested without any engine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildtool import cmd
from buildtool.errors import ToolchainError, UsageError

ENGINES = ("docker", "podman", "buildah")
INSTALL_HINT = ("install one (Debian/Ubuntu: apt-get install podman buildah; or Docker with the "
                "buildx plugin), or write the Dockerfile and build context with "
                "`--emit DIR` and build them elsewhere")

Probe = Callable[[Sequence[str]], tuple[int, str]]


def run_probe(argv: Sequence[str]) -> tuple[int, str]:
    """Exit status and output of a quick, read-only engine command."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


@dataclass(frozen=True)
class Devices:
    """What a container needs from the host for a backend family (its module says, see
    ``container_devices`` in :mod:`buildtool.backends.base`): the NVIDIA container toolkit's
    GPUs, device nodes, supplementary groups — and what the family wants that this host does
    not have (said, not fatal: the smoke test then shows no device)."""

    nvidia: bool = False
    paths: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Candidate:
    name: str
    path: str | None
    usable: bool
    detail: str  # the version, or why it cannot be used


def examine(name: str, path: str | None, probe: Probe) -> Candidate:
    if path is None:
        return Candidate(name=name, path=None, usable=False, detail="not installed")
    if name == "docker":
        rc, out = probe([path, "buildx", "version"])
        if rc != 0:
            return Candidate(name=name, path=path, usable=False,
                             detail="the buildx plugin is missing (docker-buildx-plugin)")
        buildx = out.split("\n")[0]
        rc, out = probe([path, "version", "--format", "{{.Server.Version}}"])
        if rc != 0 or not out.strip():
            last = (out.strip().splitlines() or ["no answer"])[-1]
            return Candidate(name=name, path=path, usable=False,
                             detail=f"no daemon reachable ({last})")
        return Candidate(name=name, path=path, usable=True,
                         detail=f"server {out.strip()}, {buildx}")
    rc, out = probe([path, "version"])
    if rc != 0:
        last = (out.strip().splitlines() or ["no answer"])[-1]
        return Candidate(name=name, path=path, usable=False, detail=f"does not run ({last})")
    version = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.strip().lower().startswith("version")), out.split("\n")[0])
    return Candidate(name=name, path=path, usable=True, detail=version)


def _candidates(names: Sequence[str], which: Callable[[str], str | None] | None,
                probe: Probe | None) -> Iterator[Candidate]:
    """The engines ``names``, examined one at a time (a caller may stop at the first)."""
    find = which or cmd.which
    for name in names:
        yield examine(name, find(name), probe or run_probe)


def detect(which: Callable[[str], str | None] | None = None,
           probe: Probe | None = None) -> list[Candidate]:
    """Every engine, in order of preference, and whether it can be used here."""
    return list(_candidates(ENGINES, which, probe))


def choose(requested: str | None = None, *, env: Mapping[str, str] | None = None,
           which: Callable[[str], str | None] | None = None,
           probe: Probe | None = None) -> Engine:
    """The engine to use: the one asked for (--engine, else BUILDTOOL_ENGINE), else the
    first usable one."""
    env = os.environ if env is None else env
    wanted = requested or env.get("BUILDTOOL_ENGINE") or None
    if wanted is not None and wanted not in ENGINES:
        raise UsageError(f"unknown container engine '{wanted}'",
                         hint="one of: " + ", ".join(ENGINES))
    found: list[Candidate] = []
    for c in _candidates((wanted,) if wanted else ENGINES, which, probe):
        if c.usable and c.path is not None:
            return Engine(name=c.name, path=c.path, version=c.detail)
        found.append(c)
    why = "; ".join(f"{c.name}: {c.detail}" for c in found)
    if wanted:
        raise ToolchainError(f"container engine {wanted} cannot be used here ({why})",
                             hint="choose another with --engine, or " + INSTALL_HINT)
    raise ToolchainError(f"no container engine found ({why})", hint=INSTALL_HINT)


@dataclass(frozen=True, kw_only=True)
class Engine:
    name: str  # docker | podman | buildah
    path: str
    version: str

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.path})"

    def build(self, *, context: Path, dockerfile: Path, tags: Sequence[str],
              args: Mapping[str, str], no_cache: bool = False,
              target: str | None = None) -> list[str]:
        """Build the Dockerfile (up to the stage ``target``) into the engine's image store
        under ``tags``."""
        if self.name == "docker":
            argv = [self.path, "buildx", "build", "--load", "--progress", "plain"]
        else:
            # docker format: OCI image configs have no HEALTHCHECK or SHELL
            argv = [self.path, "build", "--format", "docker", "--layers"]
        argv += ["--file", str(dockerfile)]
        for tag in tags:
            argv += ["--tag", tag]
        for key, value in args.items():
            argv += ["--build-arg", f"{key}={value}"]
        if no_cache:
            argv.append("--no-cache")
        if target:
            argv += ["--target", target]
        return [*argv, str(context)]

    def image_id(self, ref: str) -> list[str]:
        """Print the ID of the image ``ref`` names in the engine's store."""
        if self.name == "buildah":
            return [self.path, "images", "--quiet", "--no-trunc", ref]
        return [self.path, "image", "inspect", "--format", "{{.Id}}", ref]

    def save(self, tag: str, archive: Path) -> list[str]:
        """Write the image as an OCI archive (an OCI image layout in a tar file)."""
        if self.name == "buildah":
            return [self.path, "push", "--quiet", tag, f"oci-archive:{archive}:{tag}"]
        if self.name == "podman":
            return [self.path, "save", "--quiet", "--format", "oci-archive", "--output",
                    str(archive), tag]
        # docker >= 25 writes the OCI image layout (index.json, blobs/) in `docker save`
        return [self.path, "save", "--output", str(archive), tag]

    def load(self, archive: Path) -> list[str]:
        if self.name == "buildah":
            return [self.path, "pull", "--quiet", f"oci-archive:{archive}"]
        return [self.path, "load", "--input", str(archive)]

    def run(self, image: str, program: str, args: Sequence[str], *,
            mounts: Sequence[tuple[Path, str]] = (), env: Mapping[str, str] | None = None,
            devices: Sequence[str] = (), workdir: str | None = None,
            container: str | None = None) -> list[str]:
        """Run ``program`` in ``image`` (docker/podman: a throwaway container; buildah: in
        the working ``container`` made by :meth:`create`)."""
        opts: list[str] = []
        for host, inside in mounts:
            opts += ["--volume", f"{host}:{inside}"]
        for key, value in (env or {}).items():
            opts += ["--env", f"{key}={value}"]
        if self.name == "buildah":
            if container is None:
                raise ValueError("buildah runs programs in a working container: create() one")
            if workdir:
                opts += ["--workingdir", workdir]
            return [self.path, "run", *opts, container, "--", program, *args]
        if workdir:
            opts += ["--workdir", workdir]
        return [self.path, "run", "--rm", "--pull=never", "--no-healthcheck", *opts,
                *devices, "--entrypoint", program, image, *args]

    def create(self, image: str, devices: Sequence[str] = ()) -> list[str]:
        """buildah only: a working container of ``image`` (its name is printed)."""
        return [self.path, "from", "--pull=never", "--quiet", *devices, image]

    def remove(self, container: str) -> list[str]:
        return [self.path, "rm", container]

    def device_flags(self, devices: Devices) -> list[str]:
        """Flags that give a container the host devices a backend family asks for."""
        flags: list[str] = []
        if devices.nvidia:
            # docker: the NVIDIA container toolkit; podman/buildah: its CDI spec
            flags += ["--gpus", "all"] if self.name == "docker" else \
                ["--device", "nvidia.com/gpu=all"]
        for path in devices.paths:
            flags += ["--device", path]
        if flags and self.name != "buildah":  # buildah from takes no --group-add
            for group in devices.groups:
                flags += ["--group-add", group]
        return flags
