"""Assembling toolchain pieces into a private prefix from package registries, never touching
the system: :func:`debian_packages` (``apt-get download`` under a private apt configuration:
its own sources list, lists and archive directories; ``dpkg-deb`` unpacks) and
:func:`pypi_wheels` (``pip download`` + unpack). What each backend family assembles from them
— CUDA toolkits, Vulkan headers — lives in its module (``Toolchain`` in
:mod:`buildtool.backends.base`); ``buildtool toolchain install`` lists them all.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from buildtool import cmd
from buildtool.archives import unzip
from buildtool.errors import CommandError, ToolchainError
from buildtool.paths import cache_dir

DEBIAN_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def toolchains_dir() -> Path:
    return cache_dir() / "toolchains"


def swap_in(done: Path, final: Path) -> Path:
    """Put a finished toolchain directory ``done`` in place as ``final`` (an earlier install
    of that name is replaced); return ``final``."""
    if final.exists():
        shutil.rmtree(final)
    done.rename(final)
    return final


# Debian's names of the architectures (uname -m → dpkg --print-architecture)
DEBIAN_ARCHS = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64el",
                "s390x": "s390x", "riscv64": "riscv64"}


def host_debian_arch() -> str:
    import platform

    machine = platform.machine()
    return DEBIAN_ARCHS.get(machine.lower(), machine.lower())


def _apt_config(work: Path, suite: str, mirror: str,
                components: tuple[str, ...] = ("main",), arch: str | None = None) -> Path:
    for sub in ("lists/partial", "archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={KEYRING}] " if Path(KEYRING).is_file() else "[trusted=yes] "
    (work / "etc/sources.list").write_text(
        f"deb {signed}{mirror} {suite} {' '.join(components)}\n")
    conf = work / "apt.conf"
    conf.write_text("\n".join([
        f'Dir::State::Lists "{work}/lists";',
        f'Dir::Cache::Archives "{work}/archives";',
        f'Dir::Etc::SourceList "{work}/etc/sources.list";',
        f'Dir::Etc::SourceParts "{work}/etc/sources.list.d";',
        f'Dir::Etc::Preferences "{work}/etc/preferences";',
        f'Dir::Etc::PreferencesParts "{work}/etc/preferences.d";',
        f'APT::Architecture "{arch or host_debian_arch()}";',
        'Acquire::Languages "none";',
    ]) + "\n")
    return conf


def debian_packages(packages: tuple[str, ...], suite: str, dest: Path, *,
                    mirror: str = DEBIAN_MIRROR, components: tuple[str, ...] = ("main",),
                    members: tuple[str, ...] = (), arch: str | None = None,
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """Download ``packages`` from Debian ``suite`` and unpack them into ``dest`` (only the
    paths matching ``members``, when given); return their versions. ``arch`` is Debian's
    name of the packages' architecture (default: this machine's; arm64 for a sysroot of
    another one). The system's apt
    configuration and package database are not touched."""
    for tool in ("apt-get", "dpkg-deb"):
        if cmd.which(tool) is None:
            raise ToolchainError(f"'{tool}' is needed to fetch {', '.join(packages)} from "
                                 "Debian", hint="run on Debian/Ubuntu, or install by hand")
    work = Path(tempfile.mkdtemp(prefix="buildtool-apt-"))
    try:
        conf = _apt_config(work, suite, mirror, components, arch)
        env = {"APT_CONFIG": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        progress(f"apt-get update ({suite}, private configuration)")
        try:
            cmd.capture(["apt-get", "-q", "update"], env=env, timeout=600)
            progress(f"apt-get download {' '.join(packages)}")
            cmd.capture(["apt-get", "-q", "download", *packages], env=env, cwd=work,
                        timeout=1800)
        except CommandError as exc:
            raise ToolchainError(
                f"could not fetch {', '.join(packages)} from Debian {suite} ({mirror}):\n  "
                + "\n  ".join(exc.tail[-6:]),
                hint="check access to the Debian mirror (a proxy: Acquire::http::Proxy in "
                     "/etc/apt/apt.conf.d applies)") from exc
        versions: dict[str, str] = {}
        dest.mkdir(parents=True, exist_ok=True)
        for package in packages:
            (deb,) = work.glob(f"{package}_*.deb")
            versions[package] = deb.name.split("_")[1].replace("%3a", ":")
            progress(f"unpacking {deb.name}")
            if members:
                unpack_deb_members(deb, dest, members)
            else:
                cmd.capture(["dpkg-deb", "-x", str(deb), str(dest)], timeout=600)
        return versions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack_deb_members(deb: Path, dest: Path, patterns: tuple[str, ...]) -> int:
    """Stream ``deb``'s data archive and extract the members matching ``patterns`` (fnmatch on
    ``./usr/...`` names) with tarfile's ``data`` filter; links that would point outside
    ``dest`` are skipped. Returns the number of members extracted."""
    argv = ["dpkg-deb", "--fsys-tarfile", str(deb)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    count = 0
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not any(fnmatch.fnmatch(member.name, p) for p in patterns):
                    continue
                try:
                    tar.extract(member, dest, filter="data")
                    count += 1
                except tarfile.FilterError:
                    continue
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.wait() not in (0, -13):  # -13: SIGPIPE when the tar stream ended early
            raise ToolchainError(f"dpkg-deb could not read {deb}")
    return count


def pypi_wheels(requirements: tuple[str, ...], dest: Path, *,
                progress: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """Download the wheels pinned by ``requirements`` (no dependencies) with this Python's pip
    and unpack them into ``dest``, keeping executable bits; return {project: version}."""
    work = Path(tempfile.mkdtemp(prefix="buildtool-wheels-"))
    try:
        progress(f"pip download {' '.join(requirements)}")
        try:
            cmd.capture([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                         "--only-binary", ":all:", "--dest", str(work), *requirements],
                        timeout=1800)
        except CommandError as exc:
            raise ToolchainError(
                "could not download " + " ".join(requirements) + " from the package index:\n  "
                + "\n  ".join(exc.tail[-6:]),
                hint="check access to PyPI (pip's index-url / proxy settings apply)") from exc
        versions: dict[str, str] = {}
        dest.mkdir(parents=True, exist_ok=True)
        for wheel in sorted(work.glob("*.whl")):
            project, version = wheel.name.split("-")[:2]
            versions[project.replace("_", "-")] = version
            progress(f"unpacking {wheel.name}")
            unpack_wheel(wheel, dest)
        return versions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack_wheel(wheel: Path, dest: Path) -> None:
    """Extract a wheel like an installer would, with the Unix modes its zip entries record
    (zipfile alone drops them: nvcc would not be executable)."""
    unzip(wheel, dest, keep_modes=False, refuse=lambda member: ToolchainError(
        f"{wheel.name}: member {member} leaves the prefix"))
