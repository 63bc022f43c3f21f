"""`buildtool toolchain install ...`: assemble toolchain pieces into a private prefix from
package registries, never touching the system.

Implemented here: ``vulkan-headers`` — Debian trixie's ``libvulkan-dev`` headers (bookworm's
1.3.239 are too old for this llama.cpp) and ``spirv-headers`` (with the CMake package
ggml-vulkan looks for), fetched with ``apt-get download`` under a private
apt configuration (its own sources list, lists and archive directories), unpacked with
``dpkg-deb -x`` into ``~/.cache/buildtool/toolchains/vulkan-headers-<version>``. Discovery
(`toolchain.find_all("vulkan-headers")`) then finds them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from buildtool import cmd
from buildtool.errors import ToolchainError
from buildtool.paths import cache_dir

DEBIAN_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def toolchains_dir() -> Path:
    return cache_dir() / "toolchains"


def _apt_config(work: Path, suite: str, mirror: str) -> Path:
    for sub in ("lists/partial", "archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={KEYRING}] " if Path(KEYRING).is_file() else "[trusted=yes] "
    (work / "etc/sources.list").write_text(f"deb {signed}{mirror} {suite} main\n")
    conf = work / "apt.conf"
    conf.write_text("\n".join([
        f'Dir::State::Lists "{work}/lists";',
        f'Dir::Cache::Archives "{work}/archives";',
        f'Dir::Etc::SourceList "{work}/etc/sources.list";',
        f'Dir::Etc::SourceParts "{work}/etc/sources.list.d";',
        f'Dir::Etc::Preferences "{work}/etc/preferences";',
        f'Dir::Etc::PreferencesParts "{work}/etc/preferences.d";',
        'APT::Architecture "amd64";',
        'Acquire::Languages "none";',
    ]) + "\n")
    return conf


def debian_packages(packages: tuple[str, ...], suite: str, dest: Path, *,
                    mirror: str = DEBIAN_MIRROR,
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """Download ``packages`` from Debian ``suite`` and unpack them into ``dest``; return their
    versions. The system's apt configuration and package database are not touched."""
    for tool in ("apt-get", "dpkg-deb"):
        if cmd.which(tool) is None:
            raise ToolchainError(f"'{tool}' is needed to fetch {', '.join(packages)} from "
                                 "Debian", hint="run on Debian/Ubuntu, or install by hand")
    work = Path(tempfile.mkdtemp(prefix="buildtool-apt-"))
    try:
        conf = _apt_config(work, suite, mirror)
        env = {"APT_CONFIG": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        progress(f"apt-get update ({suite}, private configuration)")
        cmd.capture(["apt-get", "-q", "update"], env=env, timeout=600)
        progress(f"apt-get download {' '.join(packages)}")
        cmd.capture(["apt-get", "-q", "download", *packages], env=env, cwd=work, timeout=600)
        versions: dict[str, str] = {}
        dest.mkdir(parents=True, exist_ok=True)
        for package in packages:
            (deb,) = work.glob(f"{package}_*.deb")
            versions[package] = deb.name.split("_")[1]
            cmd.capture(["dpkg-deb", "-x", str(deb), str(dest)], timeout=600)
        return versions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_vulkan_headers(progress: Callable[[str], None] = lambda _: None) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=".vulkan-headers-", dir=_ensure(toolchains_dir())))
    try:
        # ggml-vulkan needs the Vulkan headers and SPIRV-Headers' CMake package
        versions = debian_packages(("libvulkan-dev", "spirv-headers"), "trixie", staging,
                                   progress=progress)
        upstream = versions["libvulkan-dev"].split("-")[0].split(":")[-1]
        final = toolchains_dir() / f"vulkan-headers-{upstream}"
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


INSTALLERS: dict[str, Callable[[Callable[[str], None]], Path]] = {
    "vulkan-headers": install_vulkan_headers,
}
